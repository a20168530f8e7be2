"""Dunning against the strict emulator, with the worker and signed webhooks: a renewal that needs
authentication confirmed on the hosted page closes the case; Pay now with the card the bank keeps
declining fails with the reason, then the case is won by a new card; the final action cancels at Stripe."""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from billing import dunning, gateway, reconcile, records, tasks
from billing.expiry import ExpiryWindow
from billing.models import DunningCase, Invoice, Subscription
from billing.plans import PLANS
from billing.seed import seed_billing
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage
from saas.core.queue import enqueue
from tests.helpers import emulator_delivered, wait_until


def _case(user_id: int) -> DunningCase | None:
    with session_scope() as s:
        case = s.scalar(select(DunningCase).where(DunningCase.user_id == user_id).order_by(DunningCase.id.desc()))
        if case is not None:
            s.expunge(case)
        return case


def _subscriber_with_card(make_user, number: str, email: str):
    """A customer whose default card is `number` (attached by API, never set up in Checkout) and a
    subscription with two paid months, placed in the emulator and mirrored as the seed does."""
    user = make_user(email=email, name="Sam")
    customer = gateway.create_customer(user.id, user.email, user.name)["id"]
    pm = gateway.create_card_payment_method(number, 12, datetime.now(UTC).year + 3, f"t-{user.id}")
    gateway.attach_payment_method(pm["id"], customer)
    gateway.set_default_payment_method(customer, pm["id"])
    with session_scope() as s:
        s.get(type(user), user.id).stripe_customer_id = customer
    return user, customer


def _place(stripe_emulator, customer: str, months: int = 2) -> str:
    now = int(datetime.now(UTC).timestamp())
    fields = {"customer": customer, "price": PLANS["pro"].price_id}
    for i in range(months):  # the last period ends a minute from now: the renewal is the next one
        end = now + 60 - (months - 1 - i) * 30 * 86400
        fields[f"periods[{i}][start]"], fields[f"periods[{i}][end]"] = end - 30 * 86400, end
    response = requests.post(f"{stripe_emulator.base_url}/_emulator/fixtures/subscription", data=fields, timeout=10,
                             headers={"Authorization": f"Bearer {stripe_emulator.api_key}"})
    response.raise_for_status()
    return response.json()["id"]


def _mirror_subscription(user, sub_id: str) -> None:
    from billing import records

    with session_scope() as s:
        records.upsert_subscription(s, user.id, gateway.retrieve_subscription(sub_id), 1)


def test_a_renewal_needing_authentication_confirmed_on_the_hosted_page_closes_the_case(
        stripe_emulator, celery_worker, make_user):
    user, customer = _subscriber_with_card(make_user, "4000002500003155", "sca@example.com")  # needs 3DS off-session
    sub_id = _place(stripe_emulator, customer)
    _mirror_subscription(user, sub_id)
    invoice = stripe_emulator.trigger("subscription.renewal", subscription=sub_id)
    case = wait_until(lambda: _case(user.id), "the case opened by payment_failed")
    with session_scope() as s:
        row = s.scalar(select(Invoice).where(Invoice.stripe_invoice_id == invoice["id"]))
        assert row.action_required_at is not None and row.hosted_invoice_url
        hosted = row.hosted_invoice_url
        first = s.scalar(select(OutboxMessage).where(OutboxMessage.user_id == user.id))
    assert first.template == "billing_payment_action_required" and first.context["confirm_url"] == hosted
    emulator_delivered(stripe_emulator)
    assert requests.post(hosted, timeout=10).status_code == 200  # the subscriber confirms on Stripe's page
    wait_until(lambda: _case(user.id).status == "recovered", "the case closed by invoice.paid")
    assert (_case(user.id).cause, case.id) == ("authentication", _case(user.id).id)
    with session_scope() as s:
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == user.id)) == "active"
        kinds = s.scalars(select(OutboxMessage.kind).where(OutboxMessage.user_id == user.id)).all()
    assert sorted(kinds) == ["dunning-recovered", "payment-failed"]
    emulator_delivered(stripe_emulator)


def test_pay_now_is_declined_until_the_card_changes_then_a_new_card_wins_the_case(
        settings, stripe_emulator, celery_worker, make_user):
    from billing import progress

    user = make_user(email="fabio@example.com", name="Fabio")
    with session_scope() as s:
        seed_billing(s, {"fabio": s.get(type(user), user.id)}, datetime.now(UTC), settings)
    case = _case(user.id)
    assert (case.status, case.step) == ("open", 0)

    op = progress.new_operation(user.id, "pay")
    enqueue(tasks.pay_open_invoice, user_id=user.id, op_id=op)
    state = wait_until(lambda: (progress.get_state(op) or {}).get("state") != "pending" and progress.get_state(op),
                       "Pay now's outcome")
    assert state["state"] == "failed" and "declined" in state["message"]
    assert _case(user.id).status == "open" and _case(user.id).pending_cause is None

    # A new card (any other card: the bank declines only the old one) saved as Checkout would, then retried
    with session_scope() as s:
        fabio = s.get(type(user), user.id)
        customer = fabio.stripe_customer_id
    pm = gateway.create_card_payment_method("4242424242424242", 12, datetime.now(UTC).year + 4, f"new-{user.id}")
    gateway.attach_payment_method(pm["id"], customer)
    gateway.set_default_payment_method(customer, pm["id"])
    with session_scope() as s:
        won = dunning.retry_open_invoice(s, s.get(type(user), user.id), "card_updated", "card-test")
    assert (won.status, won.cause) == ("recovered", "card_updated")
    emulator_delivered(stripe_emulator)  # the invoice.paid webhook finds the case closed: nothing twice
    with session_scope() as s:
        assert s.scalar(select(Subscription.status).where(Subscription.user_id == user.id)) == "active"
        thanks = s.scalars(select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "dunning-recovered")).all()
    assert thanks == [f"dunning-recovered:{case.id}"]
    assert _case(user.id).cause == "card_updated"


@pytest.mark.parametrize("action", ["cancel", "mark_unpaid"])
def test_the_final_action_is_applied_at_stripe(settings, stripe_emulator, celery_worker, make_user, action):
    user = make_user(email=f"lost-{action}@example.com", name="Lou")
    with session_scope() as s:
        seed_billing(s, {"fabio": s.get(type(user), user.id)}, datetime.now(UTC) - timedelta(days=11), settings)
        s.execute(DunningCase.__table__.update().where(DunningCase.user_id == user.id)
                  .values(step=3, status="lost", final_action=action, closed_at=datetime.now(UTC)))
    case = _case(user.id)
    enqueue(tasks.apply_dunning_final_action, case_ids=[case.id])
    wait_until(lambda: _case(user.id).final_action_done_at is not None, "the final action")
    emulator_delivered(stripe_emulator)
    with session_scope() as s:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        invoice = s.get(Invoice, case.invoice_id)
    if action == "cancel":
        assert sub.status == "canceled"
        assert gateway.retrieve_subscription(sub.stripe_subscription_id)["status"] == "canceled"
    else:  # access ends, the debt stays (the purge protects the account), Stripe stops retrying
        assert (sub.status, invoice.status) == ("unpaid", "uncollectible")
        stripe_sub = gateway.retrieve_subscription(sub.stripe_subscription_id)
        assert stripe_sub["status"] == "past_due"  # Stripe's API cannot set unpaid: our row holds it
        with session_scope() as s:  # a later event, and the nightly comparison, leave it unpaid
            later = records.upsert_subscription(s, user.id, stripe_sub, int(time.time()) + 60)
            assert later.status == "unpaid"
            account = s.get(type(user), user.id)
            window = ExpiryWindow(datetime.now(UTC).date(), 30)  # real clock: card fields compared, not the window
            assert reconcile.check_customer(s, account, window).repairs == []
        with session_scope() as s:  # once the invoice is paid, Stripe's word is applied again
            s.get(Invoice, case.invoice_id).status = "paid"
            assert records.upsert_subscription(s, user.id, stripe_sub, int(time.time()) + 120).status == "past_due"
    assert _case(user.id).status == "lost"  # the webhooks that follow do not turn it into "closed"
    with session_scope() as s:  # a redelivered task does nothing twice
        assert dunning.apply_final_action(s, s.get(DunningCase, case.id)) is False


def test_the_emulator_declines_the_retry_until_the_card_changes_and_refuses_a_paid_invoice(
        stripe_emulator, celery_worker, make_user):
    user, customer = _subscriber_with_card(make_user, "4242424242424242", "retry@example.com")
    sub_id = _place(stripe_emulator, customer)
    invoice = stripe_emulator.trigger("invoice.payment_failed", subscription=sub_id, decline_code="insufficient_funds",
                                      until_card_changes="true")
    for attempt in ("a1", "a2"):  # the same card: declined each time, with the same reason
        try:
            gateway.pay_invoice(invoice["id"], attempt)
        except gateway.PaymentError as exc:
            assert "insufficient funds" in str(exc)
        else:
            raise AssertionError("the retry should be declined")
    pm = gateway.create_card_payment_method("5555555555554444", 12, datetime.now(UTC).year + 2, f"mc-{user.id}")
    gateway.attach_payment_method(pm["id"], customer)
    gateway.set_default_payment_method(customer, pm["id"])
    paid = gateway.pay_invoice(invoice["id"], "a3")
    assert paid["status"] == "paid" and paid["attempt_count"] == 4
    assert gateway.pay_invoice(invoice["id"], "a3")["status"] == "paid"  # the same attempt: Stripe's answer replayed
    try:
        gateway.pay_invoice(invoice["id"], "a4")  # a new attempt on a paid invoice: refused, never charged twice
    except gateway.GatewayError as exc:
        assert "already paid" in str(exc)
    else:
        raise AssertionError("a paid invoice must not be paid again")
    emulator_delivered(stripe_emulator)
