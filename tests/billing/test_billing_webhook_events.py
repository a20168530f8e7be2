"""The events beyond paid and failed, each through a signed webhook: a payment the bank wants confirmed,
invoices voided or written off, subscriptions paused and resumed, a customer deleted at Stripe, a card
form that expired or refused the card, and events about customers the product does not know."""
from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest
import requests
from sqlalchemy import func, select

from billing import gateway, progress
from billing.expiry import ExpiryWindow
from billing.handlers import process_event
from billing.models import Card, Invoice, MrrMovement, StripeEvent, Subscription
from billing.webhooks import store_event
from saas.core.db import session_scope
from saas.core.mail import render_email
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage
from tests.factories import stripe_card as card
from tests.factories import stripe_event as event
from tests.factories import stripe_invoice
from tests.factories import stripe_subscription as subscription
from tests.helpers import SECRET, emulator_settled, newest_emulator_event, signed

URL = "/billing/webhooks/stripe"
TODAY = date(2026, 3, 10)
HOSTED = "https://invoice.stripe.com/i/acct_1/test_in_1"


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, stripe_webhook_secrets=(SECRET,))


@pytest.fixture
def ana(make_user, auth):
    user = make_user(email="ana@example.com", name="Ana", stripe_customer_id="cus_ana")
    auth.login("ana@example.com")
    return user


def deliver(client, evt: dict) -> None:
    payload, headers = signed(evt)
    assert client.post(URL, data=payload, headers=headers).status_code == 200
    with session_scope() as s:
        process_event(s, evt["id"], ExpiryWindow(TODAY, 30))


def invoice(status: str = "open", **fields) -> dict:
    return {**stripe_invoice("in_1", "cus_ana", "sub_1", status), "hosted_invoice_url": HOSTED, **fields}


def emails() -> list[OutboxMessage]:
    with session_scope() as s:
        rows = list(s.scalars(select(OutboxMessage)))
        s.expunge_all()
        return rows


@pytest.mark.parametrize("order", ["action first", "failure first"])
def test_a_payment_to_confirm_shows_a_banner_and_sends_one_email(client, ana, order):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    action = event("invoice.payment_action_required", invoice(), 20)
    failed = event("invoice.payment_failed", invoice(), 20)
    for evt in ([action, failed] if order == "action first" else [failed, action]):
        deliver(client, evt)
    sent = emails()
    assert len(sent) == 1
    if order == "action first":
        assert sent[0].template == "billing_payment_action_required"
        text = render_email(sent[0].template, sent[0].context).text
        assert HOSTED in text and "confirm" in text.lower()
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-banner="payment-action-required"' in page and f'href="{HOSTED}"' in page
    assert 'data-banner="payment-failed"' not in page
    assert 'data-banner="payment-action-required"' in client.get("/billing").get_data(as_text=True)
    deliver(client, event("invoice.paid", invoice("paid"), 30))
    assert 'data-banner="payment-action-required"' not in client.get("/dashboard").get_data(as_text=True)
    # the payment closed the dunning case: one "thank you, you're back" email beside the first
    assert [m.template for m in emails()] == [sent[0].template, "dunning_recovered"]


@pytest.mark.parametrize("type_, status", [("invoice.voided", "void"),
                                           ("invoice.marked_uncollectible", "uncollectible")])
def test_voided_and_uncollectible_invoices_follow(client, ana, type_, status):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    deliver(client, event("invoice.payment_failed", invoice(), 20))
    assert 'data-banner="payment-failed"' in client.get("/dashboard").get_data(as_text=True)
    deliver(client, event(type_, invoice(status), 30))
    with session_scope() as s:
        assert s.scalar(select(Invoice.status)) == status
    banner = 'data-banner="payment-failed"' in client.get("/dashboard").get_data(as_text=True)
    assert banner is (status != "void")  # a voided invoice is owed no more; an uncollectible one still is
    deliver(client, event("invoice.payment_failed", invoice(), 25, "evt_late_failure"))
    with session_scope() as s:
        assert s.scalar(select(Invoice.status)) == status  # never back to open


def test_a_paused_subscription_follows_and_shows_on_the_billing_page(client, ana):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    deliver(client, event("customer.subscription.paused", subscription("sub_1", "cus_ana", status="paused"), 20))
    with session_scope() as s:
        assert s.scalar(select(Subscription.status)) == "paused"
        assert s.scalars(select(MrrMovement.kind).order_by(MrrMovement.id)).all() == ["new", "churn"]
    page = client.get("/billing").get_data(as_text=True)
    assert 'data-banner="subscription-paused"' in page and "paused" in page
    deliver(client, event("customer.subscription.resumed", subscription("sub_1", "cus_ana"), 30))
    with session_scope() as s:
        assert s.scalar(select(Subscription.status)) == "active"
    assert 'data-banner="subscription-paused"' not in client.get("/billing").get_data(as_text=True)


def test_a_customer_deleted_at_stripe_leaves_no_customer_cards_or_live_subscription(client, ana):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    deliver(client, event("payment_method.attached", card("pm_1", "cus_ana", 3, 2030), 10))
    deliver(client, event("customer.deleted", {"id": "cus_ana", "object": "customer", "deleted": True}, 40))
    with session_scope() as s:
        assert s.get(User, ana.id).stripe_customer_id is None
        assert s.scalar(select(func.count()).select_from(Card)) == 0
        sub = s.scalar(select(Subscription))
        assert sub.status == "canceled" and sub.canceled_at is not None
        assert s.scalars(select(MrrMovement.kind).order_by(MrrMovement.id)).all() == ["new", "churn"]
        audit = s.scalar(select(AuditLog).where(AuditLog.action == "stripe.customer_deleted"))
        assert audit.subject_id == str(ana.id) and audit.details["customer"] == "cus_ana"
        assert "ana@example.com" not in str(audit.details)


def test_an_expired_card_form_tells_its_waiting_operation(client, ana):
    op_id = progress.new_operation(ana.id, "card")
    progress.finish(op_id, "Opening the secure card form…", "http://127.0.0.1:1/checkout/cs_1")
    deliver(client, event("checkout.session.expired", {"id": "cs_1", "object": "checkout.session", "mode": "setup",
                                                       "status": "expired", "customer": "cus_ana",
                                                       "client_reference_id": op_id}, int(time.time())))
    state = progress.get_state(op_id)
    assert state["state"] == "failed" and "expired" in state["message"] and not state["next"]
    response = client.get(f"/billing/wait/{op_id}", follow_redirects=True)
    assert "expired" in response.get_data(as_text=True)


def test_a_card_refused_in_the_form_tells_its_waiting_page_why(client, ana):
    op_id = progress.new_operation(ana.id, "card")
    progress.link(op_id, "seti_1")
    deliver(client, event("setup_intent.setup_failed", {
        "id": "seti_1", "object": "setup_intent", "customer": "cus_ana", "status": "requires_payment_method",
        "last_setup_error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
                             "message": "Your card has insufficient funds."}}, int(time.time())))
    state = progress.get_state(op_id)
    assert state["state"] == "failed"
    assert state["message"] == "Your card could not be saved. Your card has insufficient funds. Try another card."
    assert "could not be saved" in client.get(f"/billing/wait/{op_id}", follow_redirects=True).get_data(as_text=True)


def test_another_users_operation_is_not_touched(client, ana, make_user):
    other = make_user(email="bo@example.com", stripe_customer_id="cus_bo")
    op_id = progress.new_operation(other.id, "card")
    deliver(client, event("checkout.session.expired", {"id": "cs_1", "object": "checkout.session", "mode": "setup",
                                                       "customer": "cus_ana", "client_reference_id": op_id}, 5))
    assert progress.get_state(op_id)["state"] == "pending"


@pytest.mark.parametrize("evt", [
    event("invoice.paid", stripe_invoice("in_9", "cus_stranger", "sub_9", "paid"), 10),
    event("invoice.payment_failed", stripe_invoice("in_9", "cus_stranger", "sub_9", "open"), 10),
    event("invoice.payment_action_required", {**stripe_invoice("in_9", "cus_stranger", "sub_9", "open"),
                                              "hosted_invoice_url": HOSTED}, 10),
    event("invoice.voided", stripe_invoice("in_9", "cus_stranger", "sub_9", "void"), 10),
    event("customer.subscription.created", subscription("sub_9", "cus_stranger"), 10),
    event("customer.subscription.paused", subscription("sub_9", "cus_stranger", status="paused"), 10),
    event("payment_method.attached", card("pm_9", "cus_stranger", 3, 2030), 10),
    event("customer.deleted", {"id": "cus_stranger", "object": "customer", "deleted": True}, 10),
    event("checkout.session.expired", {"id": "cs_9", "object": "checkout.session", "mode": "setup",
                                       "customer": "cus_stranger", "client_reference_id": "op"}, 10),
    event("setup_intent.setup_failed", {"id": "seti_9", "object": "setup_intent", "customer": "cus_stranger",
                                        "last_setup_error": None}, 10),
], ids=lambda e: e["type"])
def test_events_about_an_unknown_customer_are_stored_and_leave_no_rows(client, ana, evt):
    deliver(client, evt)
    with session_scope() as s:
        assert s.get(StripeEvent, evt["id"]).processed_at is not None
        for model in (Invoice, Subscription, Card, MrrMovement, OutboxMessage, AuditLog):
            assert s.scalar(select(func.count()).select_from(model)) == 0, model.__name__


def test_the_payment_failed_email_says_why_the_card_was_declined(stripe_emulator, make_user):
    """The reason comes from the invoice's latest payment (its PaymentIntent's last_payment_error), which
    an invoice.payment_failed event does not carry: read from Stripe, said as DECLINE_MESSAGES says it."""
    before = newest_emulator_event(stripe_emulator)
    attempt = str(time.time_ns())
    user = make_user(email=f"reason-{attempt}@example.com")
    customer = gateway.create_customer(user.id, user.email, "R")
    with session_scope() as s:
        s.get(User, user.id).stripe_customer_id = customer["id"]
    pm = gateway.create_card_payment_method("4242424242424242", 12, TODAY.year + 3, f"reason-{attempt}")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.set_default_payment_method(customer["id"], pm["id"])
    sub = gateway.create_subscription(customer["id"], "price_pro_monthly", attempt)
    stripe_emulator.trigger("invoice.payment_failed", subscription=sub["id"], decline_code="insufficient_funds")
    events = requests.get(f"{stripe_emulator.base_url}/v1/events", params={"type": "invoice.payment_failed"},
                          headers={"Authorization": f"Bearer {stripe_emulator.api_key}"}, timeout=10).json()["data"]
    evt = next(e for e in events if e["data"]["object"]["customer"] == customer["id"])  # as the webhook carries it
    assert "last_payment_error" not in evt["data"]["object"]
    with session_scope() as s:
        store_event(s, evt)
    with session_scope() as s:
        process_event(s, evt["id"], ExpiryWindow(TODAY, 30))
    with session_scope() as s:
        assert s.scalar(select(Invoice.failure_reason).where(Invoice.stripe_invoice_id == evt["data"]["object"]["id"])) \
            == "Your card has insufficient funds. Try another card."
        message = s.scalar(select(OutboxMessage).where(OutboxMessage.user_id == user.id))
        text = render_email(message.template, message.context).text
    assert "insufficient funds" in text and "The charge failed" not in text
    emulator_settled(stripe_emulator, before)


def test_the_emulator_serves_the_hosted_invoice_page_where_the_payment_is_confirmed(stripe_emulator, make_user):
    before = newest_emulator_event(stripe_emulator)
    attempt = str(time.time_ns())
    customer = gateway.create_customer(10**9 + 7, f"hosted-{attempt}@example.com", "H")
    pm = gateway.create_card_payment_method("4242424242424242", 12, TODAY.year + 3, f"hosted-{attempt}")
    gateway.attach_payment_method(pm["id"], customer["id"])
    gateway.set_default_payment_method(customer["id"], pm["id"])
    sub = gateway.create_subscription(customer["id"], "price_pro_monthly", attempt)
    held = stripe_emulator.trigger("invoice.payment_failed", subscription=sub["id"],
                                   decline_code="authentication_required")
    assert held["hosted_invoice_url"] == f"{stripe_emulator.base_url}/invoice/{held['id']}"
    assert gateway.last_payment_error(held["id"])["code"] == "authentication_required"
    page = requests.get(held["hosted_invoice_url"], timeout=10)
    assert page.status_code == 200 and "Confirm the payment" in page.text
    confirmed = requests.post(held["hosted_invoice_url"], timeout=10)
    assert '<strong id="status">paid</strong>' in confirmed.text
    invoice = next(i for i in gateway.list_invoices(customer["id"]) if i["id"] == held["id"])
    assert invoice["status"] == "paid" and gateway.last_payment_error(held["id"]) is None
    assert gateway.retrieve_subscription(sub["id"])["status"] == "active"
    emulator_settled(stripe_emulator, before)
