"""A new subscriber's whole story in Chromium, on a desktop and a 390 px phone: the landing page, sign-up, a plan
chosen, changed after seeing its proration, the invoices, and a cancellation with a reason. No page scrolls
sideways. BROWSER_SHOTS=<folder> keeps a screenshot of every step there."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.models import Subscription
from saas.core.db import session_scope
from saas.core.models import User
from tests.helpers import PASSWORD, emulator_delivered, wait_until

pytestmark = pytest.mark.browser
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


class Walk:
    """The page being walked: checks that it fits its width, and photographs it when asked to."""

    def __init__(self, page, name: str):
        self.page, self.name, self.step = page, name, 0
        self.folder = Path(os.environ["BROWSER_SHOTS"]) if os.environ.get("BROWSER_SHOTS") else None

    def check(self, what: str) -> None:
        self.page.wait_for_load_state("load")
        self.step += 1
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(self.folder / f"{self.name}-{self.step:02d}-{what}.png"), full_page=True)
        width = self.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        wide = self.page.evaluate(WIDEST)
        assert width[0] <= width[1], f"{what} at {self.name} scrolls sideways: {width[0]} > {width[1]} px ({wide})"


def shown_after_reloads(page, check, what: str) -> None:
    """The page shows it, reloaded until the change's webhook has landed: the worker's own write can yield to
    an event of the same second (docs/reliability.md, "webhooks within one second")."""
    def shown() -> bool:
        if check():
            return True
        page.reload()
        return False

    wait_until(shown, what)


# The elements reaching past the window's right edge, to say what made a page scroll sideways.
WIDEST = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_a_subscriber_from_the_landing_page_to_a_cancellation(viewport, browser_instance, live_server,
                                                              stripe_emulator, celery_worker, today):
    from playwright.sync_api import expect

    context = browser_instance.new_context(base_url=live_server, viewport=VIEWPORTS[viewport])
    context.set_default_timeout(30_000)
    page = context.new_page()
    walk = Walk(page, viewport)
    email = f"nora-{viewport}@example.com"
    try:
        page.goto("/")
        expect(page.get_by_role("heading", level=1)).to_have_text("Billing that looks after itself")
        expect(page.locator("#pricing")).to_contain_text("Pro (yearly)")
        expect(page.locator("#pricing")).to_contain_text("290.00 USD")
        walk.check("landing")

        page.get_by_role("link", name="Create your account").click()
        page.get_by_label("Name", exact=True).fill("Nora")
        page.get_by_label("Email", exact=True).fill(email)
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        walk.check("signup")
        page.get_by_role("button", name="Sign up").click()
        page.wait_for_url("**/dashboard")
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing")).to_be_visible()
        walk.check("dashboard-new")

        page.get_by_role("link", name="Choose a plan").click()
        page.wait_for_url(re.compile(r"/billing"))
        expect(page.get_by_role("button", name="Subscribe to Pro", exact=True)).to_be_disabled()
        walk.check("billing-no-card")
        page.locator("#plans").get_by_role("link", name="add a card").click()
        page.get_by_role("button", name="Enter your card").click()
        page.wait_for_url(re.compile(re.escape(stripe_emulator.base_url)))
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM / YY)").fill(f"12 / {(today.year + 3) % 100:02d}")
        page.get_by_label("CVC").fill("123")
        page.get_by_label("Name on card").fill("Nora")
        page.get_by_role("button", name="Save card").click()
        page.wait_for_url(re.compile(r"/billing$"))
        expect(page.get_by_text("ending 4242 is saved")).to_be_visible()

        page.get_by_role("button", name="Subscribe to Starter").click()
        page.wait_for_url(re.compile(r"/billing$"))
        expect(page.get_by_role("status").filter(has_text="You are subscribed to Starter")).to_be_visible()
        walk.check("subscribed")
        emulator_delivered(stripe_emulator)

        page.get_by_role("button", name="Switch to Pro", exact=True).click()
        page.wait_for_url(re.compile(r"/billing/plan/"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Change to Pro")
        expect(page.locator("tbody tr")).to_have_count(2)  # the credit and the charge
        due = int(page.locator("[data-amount-due]").get_attribute("data-amount-due"))
        assert 1990 <= due <= 2000  # 29.00 − 9.00 for (nearly) the whole month
        walk.check("change-preview")
        page.get_by_role("button", name="Confirm the change").click()
        page.wait_for_url(re.compile(r"/billing$"))
        charged = re.compile(r"You are now on Pro\. \d+\.\d\d USD was charged to your card\.")
        expect(page.get_by_role("status").filter(has_text=charged)).to_be_visible()
        shown_after_reloads(page, lambda: "29.00 USD per month" in page.locator("#plan").inner_text(), "Pro")
        invoices = page.locator("#invoices tbody tr")
        expect(invoices).to_have_count(2)
        expect(invoices.first).to_contain_text(f"{due / 100:.2f} USD")
        expect(invoices.first.get_by_role("link", name=re.compile("^PDF"))).to_have_attribute(
            "href", re.compile(r"/invoice/in_\w+/pdf$"))
        walk.check("changed-invoices")
        emulator_delivered(stripe_emulator)

        page.get_by_role("link", name="Cancel subscription").click()
        page.wait_for_url("**/billing/cancel")
        page.get_by_label("Some features are missing").check()
        page.get_by_label("Anything you would like to tell us? (optional)").fill("I need an export to CSV.")
        walk.check("cancel-confirm")
        page.get_by_role("button", name="Cancel at the end of the period").click()
        page.wait_for_url(re.compile(r"/billing$"))
        expect(page.get_by_role("status").filter(has_text="Your subscription ends on")).to_be_visible()
        shown_after_reloads(page, lambda: page.get_by_role("button", name="Resume subscription").count() == 1,
                            "the resume button")
        walk.check("cancelled")

        with session_scope() as s:
            user = s.scalar(select(User).where(User.email == email))
            sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
            assert (sub.plan, sub.cancel_at_period_end, sub.cancel_reason, sub.cancel_comment) == (
                "pro", True, "missing_features", "I need an export to CSV.")
    finally:
        context.close()
