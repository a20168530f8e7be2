"""Dunning in a real browser: fabio, three days into dunning, clicks Pay now with the card his bank keeps
declining (the message appears in the banner, no reload), replaces the card through Checkout (the open
invoice is retried at once and paid), the banner goes, the thank-you email arrives once, finance counts
one recovery by "card updated"; the admin page lists the case. Set DUNNING_SCREENSHOTS=DIR to keep
the pages as PNG files."""
from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.models import DunningCase
from billing.seed import seed_billing
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage
from scheduled.runner import run_job
from tests.browser.conftest import sign_in
from tests.helpers import emulator_delivered, wait_until

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    folder = os.environ.get("DUNNING_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_fabio_pays_now_declined_then_a_new_card_wins_him_back(settings, page, make_user, stripe_emulator,
                                                               celery_worker, mail, today):
    from playwright.sync_api import expect

    fabio = make_user(email="fabio@example.com", name="Fabio")
    make_user(email="root@example.com", role="admin")
    make_user(email="fiona@example.com", role="finance")
    with session_scope() as s:
        seed_billing(s, {"fabio": s.get(type(fabio), fabio.id)}, datetime.now(UTC), settings)
    run_job("advance-dunning", settings)  # three days and an hour in: the day-3 reminder goes now
    with session_scope() as s:
        case = s.scalar(select(DunningCase).where(DunningCase.user_id == fabio.id))
        assert case.step == 1
        reminder = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == f"dunning:{case.id}:1"))
        assert reminder is not None and reminder.template == "dunning_reminder"

    sign_in(page, "fabio@example.com")
    banner = page.locator('[data-banner="payment-failed"]')
    expect(banner).to_contain_text("29.00 USD")
    shot(page, "1-dashboard-banner")
    page.evaluate("window.__stayed = true")  # gone if the page reloads
    banner.get_by_role("button", name="Pay now").click()
    result = banner.locator("[data-role=pay-result]")
    expect(result).to_contain_text("declined")
    assert page.evaluate("window.__stayed === true")
    shot(page, "2-pay-now-declined")

    emulator_delivered(stripe_emulator)
    banner.get_by_role("link", name="Update your card").click()
    page.get_by_role("button", name="Enter a new card").click()
    page.wait_for_url(re.compile(re.escape(stripe_emulator.base_url)))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM / YY)").fill(f"12 / {(today.year + 4) % 100:02d}")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Name on card").fill("Fabio")
    page.get_by_role("button", name="Save card").click()
    page.wait_for_url(re.compile(r"/billing$"))
    expect(page.locator(".flash-success")).to_contain_text("went through")
    shot(page, "3-card-saved-and-paid")
    page.goto("/dashboard")
    expect(page.locator('[data-banner="payment-failed"]')).to_have_count(0)

    def thanked():
        return [m for m in mail.messages() if m["To"] == "fabio@example.com" and "you're back" in m["Subject"]]

    wait_until(thanked, "the thank-you email")
    emulator_delivered(stripe_emulator)  # the payment's webhooks change nothing twice
    with session_scope() as s:
        row = s.get(DunningCase, case.id)
        assert (row.status, row.cause) == ("recovered", "card_updated")
        assert s.scalars(select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "dunning-recovered")
                         ).all() == [f"dunning-recovered:{case.id}"]
    assert len(thanked()) == 1

    page.context.clear_cookies()
    sign_in(page, "fiona@example.com")
    page.goto("/finance/reports")
    expect(page.locator('[data-figure="recovered-card_updated"]')).to_have_text("1")
    expect(page.locator('[data-figure="recovered"]')).to_have_text("1")
    shot(page, "4-finance-funnel")

    page.context.clear_cookies()
    sign_in(page, "root@example.com")
    page.goto("/admin/dunning")
    expect(page.locator(f'table[data-table="closed-cases"] tr[data-case-id="{case.id}"]')).to_contain_text("card updated")
    shot(page, "5-admin-dunning")


def test_the_no_login_link_works_for_its_account_only_and_not_after_the_case(settings, page, make_user,
                                                                              stripe_emulator, celery_worker, today):
    from playwright.sync_api import expect

    fabio = make_user(email="fabio@example.com", name="Fabio")
    make_user(email="other@example.com")
    with session_scope() as s:
        seed_billing(s, {"fabio": s.get(type(fabio), fabio.id)}, datetime.now(UTC), settings)
        case = s.scalar(select(DunningCase).where(DunningCase.user_id == fabio.id))
        token, case_id = case.link_token, case.id
    assert page.goto(f"/billing/recover/{token[:-2]}xx").status == 404
    sign_in(page, "other@example.com")
    assert page.goto(f"/billing/recover/{token}").status == 403  # another account's link
    page.context.clear_cookies()

    page.goto(f"/billing/recover/{token}")  # not signed in
    expect(page.get_by_role("heading", name=re.compile("Your payment of 29.00 USD"))).to_be_visible()
    shot(page, "6-no-login-link")
    emulator_delivered(stripe_emulator)
    page.get_by_role("button", name="Update your card").click()
    page.wait_for_url(re.compile(re.escape(stripe_emulator.base_url)))
    page.get_by_label("Card number").fill("4242 4242 4242 4242")
    page.get_by_label("Expiry (MM / YY)").fill(f"12 / {(today.year + 4) % 100:02d}")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Name on card").fill("Fabio")
    page.get_by_role("button", name="Save card").click()
    expect(page.get_by_role("heading", name="Thank you — you're back")).to_be_visible()
    shot(page, "7-no-login-paid")
    with session_scope() as s:
        assert (s.get(DunningCase, case_id).status, s.get(DunningCase, case_id).cause) == ("recovered", "card_updated")
    assert page.goto(f"/billing/recover/{token}").status == 410  # the case ended: the link is refused
    assert page.goto("/dashboard").url.split("?")[0].endswith("/login")  # and it never signed anyone in
    emulator_delivered(stripe_emulator)
