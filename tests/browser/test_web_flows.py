"""The web experience in a real browser: banners, admin review, live report progress, the contact limit."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from tests.browser.conftest import sign_in
from tests.web.helpers import add_card

pytestmark = pytest.mark.browser


def test_expiring_card_banner_after_the_nightly_job_and_gone_after_checkout(settings, page, make_user, stripe_emulator,
                                                                            celery_worker, today):
    from playwright.sync_api import expect

    from scheduled.runner import run_job

    ana = make_user(email="ana@example.com", name="Ana")
    add_card(ana.id, today.month, today.year, brand="visa", last4="4242")
    sign_in(page, "ana@example.com")
    banner = page.locator('[data-banner="card-expiring"]')
    expect(banner).to_have_count(0)  # the nightly job has not flagged it yet

    run_job("flag-expiring-cards", settings)
    page.goto("/dashboard")
    expect(banner).to_contain_text(f"Your Visa ending 4242 expires on {today.month:02d}/{today.year}")
    banner.get_by_role("link", name="Update your card").click()
    page.get_by_role("button", name="Enter a new card").click()
    page.wait_for_url(re.compile(re.escape(stripe_emulator.base_url)))  # the emulator's Checkout page
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM / YY)").fill(f"12 / {(today.year + 4) % 100:02d}")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Name on card").fill("Ana")
    page.get_by_role("button", name="Save card").click()
    page.wait_for_url(re.compile(r"/billing$"))  # back in the app once the worker synced the card
    page.goto("/dashboard")
    expect(page.locator("#card-h + p")).to_contain_text("4242")
    expect(banner).to_have_count(0)


def test_admin_exempts_a_dormant_account_and_the_purge_skips_it(settings, page, make_user):
    from playwright.sync_api import expect

    from scheduled.runner import run_job

    now = datetime.now(UTC)
    dormant = dict(last_seen_at=now - timedelta(days=250), inactive_warned_at=now - timedelta(days=35),
                   purge_due_at=now - timedelta(days=5))
    kept = make_user(email="dario@example.com", **dormant)
    gone = make_user(email="carla@example.com", **dormant)
    admin = make_user(email="root@example.com", role="admin")
    sign_in(page, "root@example.com")
    page.goto("/admin/dormant")
    row = page.locator(f'tr[data-user-id="{kept.id}"]')
    row.get_by_label("Reason to exempt dario@example.com").fill("Customer asked by phone")
    row.get_by_role("button", name="Exempt").click()
    expect(page.locator(".flash-success")).to_contain_text("Exempt from purge: 1 account done")
    expect(row).to_contain_text("exempted by an admin")

    run_job("purge-dormant-accounts", settings)
    with session_scope() as s:
        assert s.get(User, kept.id).purged_at is None
        assert s.get(User, gone.id).purged_at is not None  # the purge did run
        audit = s.scalar(select(AuditLog).where(AuditLog.action == "dormant.exempt"))
        assert audit.actor == f"admin:{admin.id}" and audit.subject_id == str(kept.id)


def test_finance_report_progress_reaches_100_and_the_file_downloads(page, make_user, celery_worker, tmp_path):
    from playwright.sync_api import expect

    make_user(email="fiona@example.com", role="finance")
    sign_in(page, "fiona@example.com")
    page.goto("/finance/reports")
    page.get_by_label("From").fill("2025-01-01")
    page.get_by_label("To (included)").fill("2025-03-31")
    page.get_by_role("button", name="Build the report").click()
    report = page.locator(".report").first
    expect(report.locator("progress")).to_have_attribute("value", "100")
    expect(report.locator("[data-role=percent]")).to_have_text("100%")
    link = report.get_by_role("link", name="Download CSV")
    expect(link).to_be_visible()
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "revenue-churn-2025-01-01-to-2025-03-31.csv"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("date,currency,revenue") and len(lines) == 1 + 90


def test_second_quick_contact_post_keeps_the_message_and_says_when(page):
    from playwright.sync_api import expect

    def send(subject: str) -> None:
        page.goto("/contact")
        page.get_by_label("Your email").fill("vera@example.org")
        page.get_by_label("Subject").fill(subject)
        page.get_by_label("Message").fill("Hello, I have a question about my plan.")
        page.get_by_role("button", name="Send message").click()

    send("First")
    expect(page.locator(".flash-success")).to_contain_text("your message is on its way")
    send("Second")
    expect(page.locator("[data-limited]")).to_contain_text(re.compile(r"send it again in \d+ seconds?"))
    expect(page.get_by_label("Subject")).to_have_value("Second")  # nothing typed is lost
    expect(page.get_by_label("Message")).to_have_value("Hello, I have a question about my plan.")


PAGES = {"anonymous": ["/", "/login", "/signup", "/contact", "/password/forgot"],
         "subscriber": ["/dashboard", "/billing", "/billing/card", "/contact", "/account/password"],
         "admin": ["/admin/dormant", "/admin/jobs", "/admin/outbox", "/admin/audit", "/dev/mail"],
         "finance": ["/finance/reports"]}


@pytest.mark.parametrize("role", list(PAGES))
def test_no_page_breaks_its_content_security_policy(page, make_user, role):
    """Chromium reports every CSP violation on the console; none on any page (no inline script)."""
    violations = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    if role != "anonymous":
        make_user(email=f"{role}@example.com", role=role)
        sign_in(page, f"{role}@example.com")
    for path in PAGES[role]:
        response = page.goto(path)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        page.wait_for_load_state("networkidle")
    assert violations == []


def test_jobs_page_pauses_a_job_and_refreshes_itself_when_a_run_finishes(page, make_user):
    from playwright.sync_api import expect

    from scheduled import ledger
    from scheduled.models import JobRun

    make_user(email="root@example.com", role="admin")
    sign_in(page, "root@example.com")
    page.goto("/admin/jobs")
    job = page.locator('section[data-job="purge-dormant-accounts"]')
    job.get_by_label("Why pause purge-dormant-accounts").fill("Legal hold on deletions")
    job.get_by_role("button", name="Pause").click()
    expect(job).to_contain_text("Paused by admin:")
    expect(job).to_contain_text("Legal hold on deletions")

    now = datetime.now(UTC)
    with session_scope() as s:
        run = JobRun(job="flag-expiring-cards", slot=now - timedelta(hours=1), status="running", started_at=now,
                     heartbeat_at=now)
        s.add(run)
        s.flush()
        run_id = run.id
    page.goto("/admin/jobs")
    expect(page.locator("#jobs-live")).to_contain_text("1 run in progress")
    with session_scope() as s:
        ledger.finish(s, run_id, "succeeded", datetime.now(UTC))
    row = page.locator(f'tr[data-run-id="{run_id}"]')  # the script reloads the page: no click, no navigation here
    expect(row).to_contain_text("succeeded", timeout=20_000)
    expect(page.locator("#jobs-live")).not_to_contain_text("in progress")
