"""POST /billing/webhooks/stripe: verification, storage, replay, order, and what each event does."""
from __future__ import annotations

import dataclasses
import time
from datetime import date

import pytest
from sqlalchemy import func, select

from billing.expiry import ExpiryWindow
from billing.handlers import process_event
from billing.models import Card, Invoice, MrrMovement, StripeEvent, Subscription
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage
from tests.factories import stripe_card as card
from tests.factories import stripe_event as event
from tests.factories import stripe_invoice as invoice
from tests.factories import stripe_subscription as subscription
from tests.helpers import OLD_SECRET, SECRET, signed

URL = "/billing/webhooks/stripe"
TODAY = date(2026, 3, 10)


@pytest.fixture
def settings(settings):
    """Two configured webhook secrets (a rotation in progress), as production may have."""
    return dataclasses.replace(settings, stripe_webhook_secrets=(SECRET, OLD_SECRET))


@pytest.fixture
def customer(make_user):
    return make_user(email="ana@example.com", stripe_customer_id="cus_ana")


def stored() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(StripeEvent))


def deliver(client, evt: dict, process: bool = True, **sign):
    payload, headers = signed(evt, **sign)
    response = client.post(URL, data=payload, headers=headers)
    if process and response.status_code == 200:
        with session_scope() as s:
            process_event(s, evt["id"], ExpiryWindow(TODAY, 30))
    return response


def test_valid_event_is_stored_and_answered_200(client):
    response = deliver(client, event("customer.created", {"id": "cus_x"}, int(time.time())), process=False)
    assert response.status_code == 200
    assert stored() == 1


def test_rotated_secret_second_in_the_list_is_accepted(client):
    response = deliver(client, event("customer.created", {"id": "cus_x"}, 1), process=False, secret=OLD_SECRET)
    assert response.status_code == 200


@pytest.mark.parametrize("case, reason", [
    ("wrong secret", "signature does not match"),
    ("stale", "more than 5 minutes old"),
    ("future", "in the future"),
    ("missing header", "missing Stripe-Signature"),
    ("malformed json", "not a JSON"),
    ("garbage header", "malformed Stripe-Signature"),
])
def test_bad_requests_get_400_with_a_reason_and_store_nothing(client, case, reason):
    evt = event("invoice.paid", {"id": "in_1"}, 1)
    payload, headers = signed(evt)
    if case == "wrong secret":
        payload, headers = signed(evt, secret="whsec_somebody_else")
    elif case == "stale":
        payload, headers = signed(evt, timestamp=int(time.time()) - 301)
    elif case == "future":
        payload, headers = signed(evt, timestamp=int(time.time()) + 301)
    elif case == "missing header":
        headers = {"Content-Type": "application/json"}
    elif case == "malformed json":
        payload = '{"id": "evt_1", "type": '
        headers = {"Stripe-Signature": signed({}, SECRET)[1]["Stripe-Signature"].split(",")[0] + ",v1="
                   + __import__("stripe").WebhookSignature._compute_signature(
                       f"{headers['Stripe-Signature'].split(',')[0][2:]}.{payload}", SECRET)}
    elif case == "garbage header":
        headers = {"Stripe-Signature": "nonsense"}
    response = client.post(URL, data=payload, headers=headers)
    assert response.status_code == 400
    assert reason in response.get_json()["error"]
    assert stored() == 0


def test_csrf_does_not_block_webhooks(csrf_app):
    payload, headers = signed(event("customer.created", {"id": "cus_x"}, 1))
    assert csrf_app.test_client().post(URL, data=payload, headers=headers).status_code == 200


def test_unknown_event_type_is_stored_and_ignored(client, customer):
    evt = event("radar.early_fraud_warning.created", {"id": "issfr_1"}, 5)
    assert deliver(client, evt).status_code == 200
    with session_scope() as s:
        row = s.get(StripeEvent, evt["id"])
        assert row.processed_at is not None and row.error is None


def test_replay_is_a_no_op(client, customer):
    evt = event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10)
    first = deliver(client, evt)
    second = deliver(client, evt)
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.get_json()["duplicate"] is True
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(StripeEvent)) == 1
        assert s.scalar(select(func.count()).select_from(MrrMovement)) == 1


def test_out_of_order_subscription_events_never_move_backwards(client, customer):
    deliver(client, event("customer.subscription.updated",
                          subscription("sub_1", "cus_ana", cancel_at_period_end=True), 20))
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    with session_scope() as s:
        sub = s.scalar(select(Subscription))
        assert sub.cancel_at_period_end is True and sub.stripe_event_created == 20
    deliver(client, event("customer.subscription.deleted", subscription("sub_1", "cus_ana", status="canceled"), 30))
    deliver(client, event("customer.subscription.updated", subscription("sub_1", "cus_ana"), 30, "evt_late_same_second"))
    with session_scope() as s:
        assert s.scalar(select(Subscription.status)) == "canceled"
        kinds = s.scalars(select(MrrMovement.kind).order_by(MrrMovement.id)).all()
    assert kinds == ["new", "churn"]


def test_payment_failure_sets_past_due_and_a_later_success_clears_it(client, customer, mail):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    deliver(client, event("invoice.payment_failed", invoice("in_1", "cus_ana", "sub_1", "open"), 20))
    with session_scope() as s:
        assert s.scalar(select(Subscription.status)) == "past_due"
        inv = s.scalar(select(Invoice))
        assert inv.first_failed_at is not None and inv.failure_reason
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    deliver(client, event("invoice.paid", invoice("in_1", "cus_ana", "sub_1", "paid"), 30))
    with session_scope() as s:
        assert s.scalar(select(Subscription.status)) == "active"
        inv = s.scalar(select(Invoice))
        assert inv.status == "paid" and inv.first_failed_at is not None


def test_late_failure_after_payment_does_not_reopen_invoice(client, customer):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana"), 10))
    deliver(client, event("invoice.paid", invoice("in_1", "cus_ana", "sub_1", "paid"), 30))
    deliver(client, event("invoice.payment_failed", invoice("in_1", "cus_ana", "sub_1", "open"), 20))
    with session_scope() as s:
        assert s.scalar(select(Invoice.status)) == "paid"
        assert s.scalar(select(Subscription.status)) == "active"


def test_mrr_movements_normalise_yearly_plans(client, customer):
    deliver(client, event("customer.subscription.created", subscription("sub_1", "cus_ana", amount=900), 10))
    deliver(client, event("customer.subscription.updated",
                          subscription("sub_1", "cus_ana", amount=29000, interval="year", price="price_pro_yearly"), 20))
    with session_scope() as s:
        rows = s.execute(select(MrrMovement.kind, MrrMovement.mrr_before_cents, MrrMovement.mrr_after_cents)
                         .order_by(MrrMovement.id)).all()
    assert rows == [("new", 0, 900), ("expansion", 900, 2417)]


def test_card_events_recompute_is_expiring_and_detach_wins_over_late_attach(client, customer):
    deliver(client, event("payment_method.attached", card("pm_1", "cus_ana", 3, 2026), 10))
    with session_scope() as s:
        assert s.scalar(select(Card.is_expiring)) is True
    deliver(client, event("payment_method.automatically_updated", card("pm_1", "cus_ana", 3, 2029), 20))
    with session_scope() as s:
        assert s.scalar(select(Card.is_expiring)) is False
        assert s.scalar(select(Card.exp_year)) == 2029
    deliver(client, event("payment_method.detached", card("pm_1", None, 3, 2029), 30))
    deliver(client, event("payment_method.updated", card("pm_1", "cus_ana", 3, 2029), 25))
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Card)) == 0
