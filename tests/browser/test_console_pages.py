"""Every page, as each role meets it, on a desktop and a 390 px phone: no sideways scroll, and
axe-core finds no serious or critical violation. Then the admin's and finance's stories, walked.

BROWSER_SHOTS=<folder> keeps a full-page screenshot of every page visited (to look at them).
"""
from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from billing.finance import FinanceReport, FinanceSummary
from billing.models import DunningCase
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage, queue_email
from scheduled.ledger import record_skipped
from tests.browser.axe import axe_violations, page_width_overflow
from tests.browser.conftest import sign_in
from tests.factories import add, invoice
from tests.web.helpers import add_subscription

pytestmark = pytest.mark.browser
NOW = datetime.now(UTC)
VIEWPORTS = {"desktop": {"width": 1200, "height": 900}, "phone": {"width": 390, "height": 844}}
PAGES = {
    "anonymous": ["/", "/login", "/signup", "/contact", "/password/forgot"],
    "subscriber": ["/dashboard", "/billing", "/billing/card", "/contact", "/account/password"],
    "admin": ["/admin", "/admin/dormant", "/admin/dunning", "/admin/jobs", "/admin/outbox", "/admin/outbox/{outbox}", "/admin/audit"],
    "finance": ["/finance", "/finance/reports"],
}


def _dormant(make_user, email: str, **columns):
    return make_user(email=email, name=email.split("@")[0].title(), last_seen_at=NOW - timedelta(days=250),
                     inactive_warned_at=NOW - timedelta(days=35), purge_due_at=NOW - timedelta(days=5), **columns)


@pytest.fixture
def story(make_user):
    """A small world: people in the admin queue, emails in every state, a summary and two reports."""
    _dormant(make_user, "dario.with-a-rather-long-address@example.com")
    elena = _dormant(make_user, "elena@example.com")
    add_subscription(elena.id, status="active", amount_cents=6217)
    _dormant(make_user, "kept@example.com", purge_exempt_reason="Enterprise contract, renewal talks")
    with session_scope() as s:
        queue_email(s, key="t:welcome", kind="welcome", to="someone.with.a.long.address@example.com",
                    template="welcome", context={"name": "Someone"})
        s.flush()
        s.query(OutboxMessage).update({"status": "failed", "attempts": 6,
                                       "last_error": "SMTPRecipientsRefused: 550 5.1.1 mailbox unavailable"})
        outbox_id = s.query(OutboxMessage.id).scalar()
        for day, mrr in ((1, 5000), (2, 6217)):
            start = date(2025, 3, day)
            s.add(FinanceSummary(period="daily", period_start=start, period_end=start, csv="",
                                 figures={"currencies": {"usd": {"mrr_cents": mrr, "new_mrr_cents": 1217}},
                                          "active_subscriptions": day, "new_subscriptions": 1,
                                          "cancelled_subscriptions": 0, "purges_pending": 1}))
        record_skipped(s, "purge-dormant-accounts", [NOW - timedelta(days=2)], NOW,
                       "missed while no beat ran; older than the catch-up window (1 day, 12:00:00)")
        s.add(FinanceReport(kind="revenue-churn", status="done", progress=100, csv="date\n",
                            params={"start": "2025-01-01", "end": "2025-03-31"}, finished_at=NOW))
    return {"outbox": outbox_id}


@pytest.fixture
def dunning_cases(make_user):
    """An open case and a recovered one, for /admin/dunning's rows (kept out of the stories' figures)."""
    fabio = make_user(email="fabio.with-a-rather-long-address@example.com", name="Fabio")
    sub_id = add_subscription(fabio.id, status="past_due", amount_cents=2900)
    due = invoice(fabio.id, status="open", amount_cents=2900, subscription_id=sub_id, first_failed_at=NOW)
    add(DunningCase, user_id=fabio.id, subscription_id=sub_id, invoice_id=due.id, amount_cents=2900, mrr_cents=2900,
        opened_at=NOW - timedelta(days=4), step=1, link_token="tok-open")
    add(DunningCase, user_id=fabio.id, amount_cents=2900, mrr_cents=2900, status="recovered", cause="card_updated",
        link_token="tok-closed", opened_at=NOW - timedelta(days=40), closed_at=NOW - timedelta(days=38), step=1)


def _visit(page, path: str, shots: Path | None, name: str) -> dict:
    response = page.goto(path)
    found = {"path": path, "status": response.status, "overflow": page_width_overflow(page),
             "violations": axe_violations(page)}
    if shots:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    return found


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("role", list(PAGES))
def test_every_page_fits_the_screen_and_passes_axe(browser_instance, live_server, make_user, story, dunning_cases, role,
                                                   viewport):
    context = browser_instance.new_context(base_url=live_server, viewport=VIEWPORTS[viewport], bypass_csp=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    shots = Path(os.environ["BROWSER_SHOTS"]) if os.environ.get("BROWSER_SHOTS") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    try:
        if role != "anonymous":
            make_user(email=f"{role}@example.com", role=role, name=role.title())
            sign_in(page, f"{role}@example.com")
        results = []
        for path in PAGES[role]:
            path = path.format(**story)
            name = f"{viewport}-{role}{re.sub(r'[^a-z0-9]+', '-', path).rstrip('-')}"
            results.append(_visit(page, path, shots, name))
    finally:
        context.close()
    for r in results:  # the summary the report quotes: `pytest -s` shows it
        print(f"axe {viewport:7} {r['path']:24} status {r['status']} overflow {r['overflow']}px "
              f"serious/critical: {[(v['id'], v['nodes']) for v in r['violations']] or 'none'}")
    assert [r["path"] for r in results if r["status"] != 200] == []
    assert [(r["path"], r["overflow"]) for r in results if r["overflow"] > 0] == []
    assert [(r["path"], r["violations"]) for r in results if r["violations"]] == []


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_admin_story_from_the_landing_page_to_the_audit_log(browser_instance, live_server, make_user, story, viewport):
    from playwright.sync_api import expect

    context = browser_instance.new_context(base_url=live_server, viewport=VIEWPORTS[viewport])
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        make_user(email="root@example.com", role="admin", name="Root")
        sign_in(page, "root@example.com")
        page.goto("/admin")
        item = page.locator('[data-attention="dormant"]')
        expect(item.locator(".attention-count")).to_have_text("1")
        item.get_by_role("link").click()
        page.wait_for_url(re.compile(r"/admin/dormant\?protected=no$"))
        row = page.locator("tr", has_text="dario.with-a-rather-long-address@example.com")
        row.get_by_role("checkbox").check()
        page.get_by_label("With the selected accounts").select_option("exempt")
        page.get_by_role("button", name="Review and confirm…").click()
        # Refused without a reason: the queue again, with the message and the selection kept.
        expect(page.locator("#bulk-error")).to_contain_text("An exemption needs a reason")
        expect(row.get_by_role("checkbox")).to_be_checked()
        assert page_width_overflow(page) == 0
        page.get_by_label("Reason (needed to exempt)").fill("Asked by phone")
        page.get_by_role("button", name="Review and confirm…").click()
        page.get_by_role("button", name="Yes, exempt from purge").click()
        expect(page.locator(".flash-success")).to_contain_text("Exempt from purge: 1 account done")
        page.goto("/admin/audit")
        entry = page.locator('tr[data-action="dormant.exempt"]').first
        expect(entry).to_contain_text("root@example.com")
        expect(entry).to_contain_text("exempted from purge")
        expect(entry).to_contain_text("“Asked by phone”")
        expect(entry.get_by_role("link", name="dario.with-a-rather-long-address@example.com")).to_be_visible()
        page.goto("/admin/outbox?status=failed")
        page.get_by_role("link", name="Welcome to Acme SaaS").first.click()
        expect(page.get_by_role("heading", name="Text part")).to_be_visible()
        frame = page.frame_locator("iframe.mail-html")
        expect(frame.locator("body")).to_contain_text("account is ready")
        assert page_width_overflow(page) == 0
    finally:
        context.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_finance_story_charts_then_a_report(browser_instance, live_server, make_user, story, celery_worker, viewport):
    from playwright.sync_api import expect

    context = browser_instance.new_context(base_url=live_server, viewport=VIEWPORTS[viewport])
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        make_user(email="fiona@example.com", role="finance", name="Fiona")
        sign_in(page, "fiona@example.com")
        page.get_by_role("link", name="Finance").click()
        page.wait_for_url(re.compile(r"/finance$"))
        expect(page.locator("svg.chart:visible")).to_have_count(2)  # the wide or the narrow drawing
        expect(page.locator(".kpi").first).to_contain_text("62.17 USD")
        expect(page.locator("#summary")).to_contain_text("+12.17 USD")
        assert page_width_overflow(page) == 0
        page.get_by_role("link", name="Build a revenue and churn report (CSV)").click()
        page.get_by_label("From").fill("2025-01-01")
        page.get_by_label("To (included)").fill("2025-01-31")
        page.get_by_role("button", name="Build the report").click()
        expect(page.get_by_label("From")).to_have_value("2025-01-01")  # kept after the submit
        expect(page.get_by_label("To (included)")).to_have_value("2025-01-31")
        report = page.locator(".report").first
        expect(report.get_by_role("link", name="Download CSV")).to_be_visible()
        expect(report.locator("[data-role=notice]")).to_have_count(0)  # "being built" goes when done
    finally:
        context.close()
