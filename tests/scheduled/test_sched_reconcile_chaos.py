"""Chaos, webhook side: the emulator loses each webhook delivery with probability 0.3 while a batch of subscribers
subscribe, fail, recover and cancel (the worker processes what does arrive); then reconcile-stripe runs
once through the ledger and every lost event is recovered: as many recovered as dropped, and our rows
what Stripe says, as if nothing had been lost."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from billing import gateway, records, subscriptions
from billing.models import Card, Invoice, MrrMovement, StripeEvent, Subscription
from saas.core.db import session_scope
from saas.core.models import User
from saas.core.slots import latest_slot
from scheduled import clock
from scheduled.jobs.reconcile_stripe import JOB
from scheduled.runner import run_job
from tests.factories import stripe_subscriber
from tests.helpers import emulator_delivered, newest_emulator_event

SUBSCRIBERS = 12
DROP_SHARE = 0.3
SEED = 2026


@pytest.fixture
def emulator(stripe_emulator):
    before = newest_emulator_event(stripe_emulator)
    yield stripe_emulator
    stripe_emulator.webhooks(drop_share=0)
    if newest_emulator_event(stripe_emulator) != before:
        emulator_delivered(stripe_emulator, processed=False)


def script(i: int) -> dict[str, bool]:
    """What subscriber i does after subscribing."""
    fails = i % 3 == 0
    return {"fails": fails, "recovers": fails and i % 2 == 0, "cancels_at_period_end": i % 4 == 1,
            "canceled_at_stripe": i % 4 == 3}


def test_every_webhook_lost_in_a_storm_is_recovered_by_one_run(emulator, celery_worker, settings, today):
    slot = latest_slot(settings.schedules[JOB], settings.tz, clock.now())
    first = run_job(JOB, settings, slot - timedelta(days=1), now=slot - timedelta(days=1))  # last night's run
    assert first.status == "succeeded", first.error
    earlier = {e["id"] for e in gateway.list_events(first.details["watermark"])}
    emulator.webhooks(drop_share=DROP_SHARE, seed=SEED)

    users = []
    for i in range(SUBSCRIBERS):
        user = stripe_subscriber(today, plan="pro" if i % 2 else "starter")
        users.append(user)
        steps = script(i)
        if steps["fails"]:
            emulator.trigger("invoice.payment_failed", customer=user.stripe_customer_id,
                             decline_code="insufficient_funds")
        if steps["recovers"]:
            emulator.trigger("invoice.paid", customer=user.stripe_customer_id)
        if steps["cancels_at_period_end"]:
            with session_scope() as s:
                subscriptions.set_cancel_at_period_end(s, s.get_one(User, user.id), True, f"chaos-{i}")
        if steps["canceled_at_stripe"]:  # in Stripe's Dashboard, say: the product hears of it by webhook only
            with session_scope() as s:
                sub_id = s.scalar(select(Subscription.stripe_subscription_id).where(Subscription.user_id == user.id))
            gateway.cancel_subscription(sub_id)
    state = emulator_delivered(emulator)  # what was delivered is processed; the dropped never come
    dropped = state["dropped"]
    storm = [e["id"] for e in gateway.list_events(first.details["watermark"]) if e["id"] not in earlier]
    with session_scope() as s:
        before = _mirror(s, users)
    truth = _stripe(users)
    assert dropped and before != truth  # the storm left our rows behind Stripe

    run = run_job(JOB, settings, slot, now=slot)
    assert run.status == "succeeded", run.error
    counts = {k: run.details[k] for k in ("events_seen", "events_recovered", "objects_compared", "objects_repaired")}
    print(f"\nCHAOS webhooks: {SUBSCRIBERS} subscribers, {len(storm)} events during the storm, {len(dropped)} "
          f"dropped ({len(dropped) * 100 // len(storm)}%), {counts['events_recovered']} recovered in one run; "
          f"run counts {counts}")
    assert counts["events_recovered"] == len(dropped)
    assert counts["objects_repaired"] == 0  # the events alone put every row right
    with session_scope() as s:
        assert set(dropped) <= set(s.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_not(None))))
        after = _mirror(s, users)
        movements = _movements(s, users)
    assert after == truth
    assert movements == {u.id: ["new", *(["churn"] if script(i)["canceled_at_stripe"] else [])]
                         for i, u in enumerate(users)}


def _mirror(s, users) -> dict:
    """Our rows of each subscriber: subscription columns, default card, invoice statuses and failures."""
    out = {}
    for user in users:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        card = s.scalar(select(Card).where(Card.user_id == user.id, Card.is_default))
        invoices = s.execute(select(Invoice.stripe_invoice_id, Invoice.status, Invoice.first_failed_at.is_not(None))
                             .where(Invoice.user_id == user.id)).all()
        out[user.id] = {
            "subscription": {name: getattr(sub, name) for name in records.subscription_values(_first_sub(user))},
            "card": (card.stripe_payment_method_id, card.last4, card.exp_month, card.exp_year),
            "invoices": {i: (status, failed) for i, status, failed in invoices},
        }
    return out


def _first_sub(user) -> dict:
    return next(iter(gateway.list_subscriptions(user.stripe_customer_id)))


def _stripe(users) -> dict:
    """The same, as Stripe has it (a failure: an invoice attempted more than once or left unpaid)."""
    out = {}
    for user in users:
        customer = gateway.retrieve_customer(user.stripe_customer_id)
        pm = customer["invoice_settings"]["default_payment_method"]
        invoices = {}
        for inv in gateway.list_invoices(user.stripe_customer_id):
            failed = inv["attempt_count"] > 1 or (inv["status"] == "open" and inv["attempted"])
            invoices[inv["id"]] = (inv["status"], failed)
        out[user.id] = {
            "subscription": records.subscription_values(_first_sub(user)),
            "card": (pm["id"], pm["card"]["last4"], pm["card"]["exp_month"], pm["card"]["exp_year"]),
            "invoices": invoices,
        }
    return out


def _movements(s, users) -> dict[int, list[str]]:
    return {user.id: list(s.scalars(select(MrrMovement.kind).join(Subscription, MrrMovement.subscription_id ==
                                                                    Subscription.id)
                                    .where(Subscription.user_id == user.id).order_by(MrrMovement.at, MrrMovement.id)))
            for user in users}
