"""What a visitor and a subscriber see: the landing page, navigation, plan names, dates, card wording, disabled
buttons, invoice links, the favicon, and the password-changed email."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from billing.models import Invoice, Subscription
from billing.plans import PLANS
from saas.core.db import session_scope
from saas.core.formatting import long_date, plan_label
from saas.core.outbox import OutboxMessage
from tests.helpers import PASSWORD
from tests.web.helpers import add_card, add_invoice, add_subscription


@pytest.fixture
def ana(make_user, auth):
    user = make_user(email="ana@example.com", name="Ana")
    auth.login("ana@example.com")
    return user


def test_visitors_get_a_landing_page_with_the_catalogs_plans(client):
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Billing that looks after itself" in page
    for plan in PLANS.values():
        assert plan.label in page and f"{plan.amount_cents / 100:,.2f} USD" in page
    assert "Pro (yearly)" in page and 'href="/signup"' in page and 'href="/login"' in page


def test_signed_in_users_go_from_the_landing_page_to_their_dashboard(client, ana):
    response = client.get("/")
    assert response.status_code == 302 and response.location.endswith("/dashboard")


def test_favicon_is_linked_and_served(client):
    page = client.get("/").get_data(as_text=True)
    assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.data
    legacy = client.get("/favicon.ico")
    assert legacy.status_code == 301 and legacy.location.endswith("/static/favicon.svg")


def test_navigation_has_billing_and_a_new_user_can_choose_a_plan(client, ana):
    page = client.get("/dashboard").get_data(as_text=True)
    assert '<a href="/billing">Billing</a>' in page
    assert "You have no subscription yet" in page and 'href="/billing#plans">Choose a plan</a>' in page
    assert "Add a card</a>" in page and "Update your card" not in page
    billing = client.get("/billing").get_data(as_text=True)
    assert 'aria-current="page">Billing</a>' in billing and "Choose a plan" in billing
    assert billing.count("disabled aria-describedby") == len(PLANS)  # no card: subscribe buttons disabled
    assert "Add a card" in client.get("/billing/card").get_data(as_text=True)


def test_with_a_card_the_wording_is_update(client, ana):
    add_card(ana.id, 12, 2031)
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Update your card</a>" in page and "Add a card" not in page
    billing = client.get("/billing").get_data(as_text=True)
    assert "disabled" not in billing and "Subscribe to Pro (yearly)" in billing
    assert "<h1>Update your card</h1>" in client.get("/billing/card").get_data(as_text=True)


def test_one_plan_name_and_one_date_format(client, ana):
    add_subscription(ana.id, plan="pro-yearly", amount_cents=29000)
    end = datetime(2031, 3, 5, 12, tzinfo=UTC)
    with session_scope() as s:
        s.execute(update(Subscription).where(Subscription.user_id == ana.id).values(interval="year",
                                                                                 current_period_end=end))
    invoice_id = add_invoice(ana.id, amount_cents=29000)
    with session_scope() as s:
        s.execute(update(Invoice).where(Invoice.id == invoice_id).values(created_at=end))
    for url in ("/dashboard", "/billing"):
        page = client.get(url).get_data(as_text=True)
        assert "Pro (yearly)" in page and "Pro-Yearly" not in page and "pro-yearly</" not in page
        assert "Renews on 5 March 2031." in page and "<td data-label=\"Date\">5 March 2031</td>" in page, url
    assert long_date(datetime(2031, 3, 5, 23, 30, tzinfo=UTC)) == "5 March 2031"
    assert long_date("2031-03-05") == "5 March 2031" and long_date(None) == "" and long_date("soon") == "soon"
    assert plan_label("Pro", "year") == "Pro (yearly)" and plan_label("Pro", "month") == "Pro"


def test_invoices_link_their_hosted_page_and_pdf(client, ana):
    invoice_id = add_invoice(ana.id)
    with session_scope() as s:
        s.execute(update(Invoice).where(Invoice.id == invoice_id).values(
            hosted_invoice_url="https://invoice.stripe.com/i/x", invoice_pdf="https://pay.stripe.com/invoice/x/pdf"))
    for url in ("/dashboard", "/billing"):
        page = client.get(url).get_data(as_text=True)
        assert 'href="https://invoice.stripe.com/i/x"' in page and 'href="https://pay.stripe.com/invoice/x/pdf"' in page


def test_the_cancel_page_needs_a_live_subscription(client, ana):
    response = client.get("/billing/cancel")
    assert response.status_code == 303 and response.location.endswith("/billing")
    add_subscription(ana.id)
    assert "Cancel your subscription?" in client.get("/billing/cancel").get_data(as_text=True)
    bad = client.post("/billing/cancel", data={"reason": "x" * 40})
    assert bad.status_code == 400 and "Not a valid choice" in bad.get_data(as_text=True)


def test_plan_change_input_errors_re_render_the_billing_page(client, ana):
    add_subscription(ana.id, plan="pro")
    for plan, message in (("", "Choose one of the plans listed."), ("pro", "not possible")):
        response = client.post("/billing/plan/preview", data={"plan": plan})
        assert response.status_code == 400 and message in response.get_data(as_text=True)
    expired = client.get("/billing/plan/nope")
    assert expired.status_code == 303
    assert "expired" in client.get("/billing").get_data(as_text=True)


def _password_mails(user_id: int) -> list[OutboxMessage]:
    with session_scope() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.user_id == user_id,
                                                          OutboxMessage.kind == "password-changed")))
        s.expunge_all()
        return rows


def test_a_changed_password_is_told_by_email(client, ana):
    response = client.post("/account/password", data={
        "current_password": PASSWORD, "password": "brand-new-pass-9", "confirm": "brand-new-pass-9"})
    assert response.status_code == 302
    [row] = _password_mails(ana.id)
    rendered = row.render()
    assert row.to_addr == "ana@example.com" and rendered.subject == "Your Acme SaaS password was changed"
    assert "was changed on" in rendered.text and "/password/forgot" in rendered.text
    wrong = client.post("/account/password", data={
        "current_password": "not-it-at-all", "password": "other-new-pass-9", "confirm": "other-new-pass-9"})
    assert wrong.status_code == 400 and len(_password_mails(ana.id)) == 1
