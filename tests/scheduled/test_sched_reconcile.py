"""reconcile-stripe through the ledger, against the Stripe emulator: missed events recovered (across
pages), a re-run that changes nothing, the 30-day bound, and drift in our rows repaired."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from billing import gateway, records
from billing.models import Card, MrrMovement, StripeEvent, Subscription
from saas.core.db import session_scope
from saas.core.models import AuditLog
from saas.core.slots import latest_slot
from scheduled import clock
from scheduled.jobs.reconcile_stripe import JOB, RETENTION, listing_start, slice_of
from scheduled.models import JobRun
from scheduled.runner import run_job
from tests.factories import stripe_subscriber
from tests.helpers import emulator_delivered, newest_emulator_event

PAGE_OVERFLOW = 105  # more than one page of GET /v1/events (limit 100)


@pytest.fixture
def emulator(stripe_emulator):
    """The emulator with every webhook delivered; deliveries are restored after the test."""
    before = newest_emulator_event(stripe_emulator)
    stripe_emulator.webhooks(drop_share=0)
    yield stripe_emulator
    stripe_emulator.webhooks(drop_share=0)
    if newest_emulator_event(stripe_emulator) != before:
        emulator_delivered(stripe_emulator, processed=False)


@pytest.fixture
def slot(settings):
    """Today's (or yesterday's) slot of the job by the product's clock: the emulator stamps events with it."""
    return latest_slot(settings.schedules[JOB], settings.tz, clock.now())


def baseline(settings, slot):
    """A run eight days before `slot` (before any day the tests run: the drift test picks one of the 7 before `slot`) that takes in every event the emulator holds from earlier tests."""
    run = run_job(JOB, settings, slot - timedelta(days=8), now=slot - timedelta(days=8), explicit=True)
    assert run is not None and run.status == "succeeded", run and run.error
    return run


def test_every_dropped_webhook_is_recovered_across_pages_and_a_rerun_changes_nothing(emulator, settings, slot,
                                                                                     today):
    baseline(settings, slot)
    emulator.webhooks(drop_share=1, seed=1)  # every delivery lost from here
    user = stripe_subscriber(today)
    for year in range(PAGE_OVERFLOW):
        emulator.trigger("payment_method.automatically_updated", customer=user.stripe_customer_id, exp_month=6,
                         exp_year=today.year + 4 + year % 3)
    emulator.trigger("invoice.payment_failed", customer=user.stripe_customer_id)
    dropped = emulator_delivered(emulator, processed=False)["dropped"]
    assert len(dropped) > PAGE_OVERFLOW

    dry = run_job(JOB, settings, slot - timedelta(days=1), dry_run=True, now=slot)
    assert sorted(dry.details["would_recover"]) == sorted(dropped)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(StripeEvent).where(StripeEvent.id.in_(dropped))) == 0

    run = run_job(JOB, settings, slot - timedelta(days=1), now=slot)
    assert run.status == "succeeded", run.error
    assert run.details["events_recovered"] == len(dropped) and run.details["events_seen"] >= len(dropped)
    assert run.changed >= len(dropped) and run.scanned >= len(dropped)
    with session_scope() as s:
        assert set(s.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_not(None)))) >= set(dropped)
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        card = s.scalar(select(Card).where(Card.user_id == user.id))
    assert sub.status == "past_due"  # known from the recovered events only
    pm = gateway.retrieve_payment_method(card.stripe_payment_method_id)
    assert (card.exp_month, card.exp_year) == (pm["card"]["exp_month"], pm["card"]["exp_year"]) == \
        (6, today.year + 4 + (PAGE_OVERFLOW - 1) % 3)

    assert run_job(JOB, settings, slot - timedelta(days=1), now=slot) is None  # exactly once per slot
    again = run_job(JOB, settings, slot, now=slot)
    assert again.details["events_recovered"] == 0 and again.details["objects_repaired"] == 0
    assert again.details["since"] == run.details["watermark"]  # from where the previous listing ended


def test_the_listing_never_reaches_back_beyond_stripes_30_days(emulator, settings, slot, add, ctx):
    far = slot + RETENTION + timedelta(days=1)  # every event the emulator holds is older than 30 days then
    gateway.create_customer(10**9 + slot.toordinal(), "thirty@example.com", "Thirty")  # at least one event
    run = run_job(JOB, settings, far, now=far)
    assert run.status == "succeeded", run.error
    assert run.details["since"] == int((far - RETENTION).timestamp())
    assert (run.details["events_seen"], run.details["events_recovered"]) == (0, 0)

    add(JobRun, job=JOB, slot=slot - timedelta(days=60), status="succeeded", details={"watermark": 1})
    assert listing_start_of(ctx, slot) == int((slot - RETENTION).timestamp())
    add(JobRun, job=JOB, slot=slot - timedelta(days=1), status="succeeded",
        details={"watermark": int(slot.timestamp()) - 3600})
    add(JobRun, job=JOB, slot=slot - timedelta(hours=12), status="failed", details={"watermark": 5})
    add(JobRun, job=JOB, slot=slot - timedelta(hours=6), dry_run=True, status="succeeded", details={"watermark": 6})
    assert listing_start_of(ctx, slot) == int(slot.timestamp()) - 3600  # the last succeeded real run's


def listing_start_of(ctx, slot) -> int:
    with session_scope() as s:
        return listing_start(s, ctx(JOB, slot))


def test_drift_in_a_slice_of_customers_is_repaired_and_audited(emulator, settings, slot, today):
    baseline(settings, slot)
    user = stripe_subscriber(today)
    other = stripe_subscriber(today)
    day = next(slot - timedelta(days=k) for k in range(7)
               if slice_of((slot - timedelta(days=k)).astimezone(settings.tz).date()) == user.id % 7)
    emulator_delivered(emulator, processed=False)
    with session_scope() as s:  # our rows drift from Stripe's: as if events had been lost for good
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        truth = records.subscription_values(gateway.retrieve_subscription(sub.stripe_subscription_id))
        sub.status, sub.cancel_at_period_end, sub.current_period_end = "canceled", True, None
        card = s.scalar(select(Card).where(Card.user_id == user.id))
        card.last4, card.exp_year = "0000", today.year + 9
        s.execute(Subscription.__table__.update().where(Subscription.user_id == other.id).values(status="past_due"))
        movements = s.scalar(select(func.count()).select_from(MrrMovement))

    run = run_job(JOB, settings, day, now=day, explicit=True)
    assert run.status == "succeeded", run.error
    assert run.details["objects_repaired"] == 2 and run.details["objects_compared"] >= 3
    with session_scope() as s:
        sub = s.scalar(select(Subscription).where(Subscription.user_id == user.id))
        assert {name: getattr(sub, name) for name in truth} == truth
        card = s.scalar(select(Card).where(Card.user_id == user.id))
        assert (card.last4, card.exp_year) == ("4242", today.year + 3)
        if other.id % 7 != user.id % 7:  # another slice: not compared tonight
            assert s.scalar(select(Subscription.status).where(Subscription.user_id == other.id)) == "past_due"
        audits = s.scalars(select(AuditLog).where(AuditLog.action == "stripe.drift_repaired")).all()
        assert sorted(a.details["object"] for a in audits) == ["default card", "subscription"]
        assert s.scalar(select(func.count()).select_from(MrrMovement)) == movements + 1  # back to paying
    again = run_job(JOB, settings, day + timedelta(days=7), now=day + timedelta(days=7))
    assert again.details["objects_repaired"] == 0  # a week later, the same slice: nothing differs


def test_a_stored_event_whose_task_was_lost_is_queued_again(emulator, settings, slot, sent):
    baseline(settings, slot)
    gateway.create_customer(10**9 + 7 * slot.toordinal(), "stuck@example.com", "Stuck")
    emulator_delivered(emulator, processed=False)  # stored by the webhook; no worker processes it here
    with session_scope() as s:
        stuck = s.scalars(select(StripeEvent.id).where(StripeEvent.processed_at.is_(None))).all()
        s.execute(StripeEvent.__table__.update().values(received_at=slot - timedelta(hours=1)))
    assert stuck
    sent.clear()
    run = run_job(JOB, settings, slot - timedelta(days=1), now=slot)
    assert run.details["events_requeued"] == len(stuck) and run.details["events_recovered"] == 0
    assert sorted(kw["event_id"] for name, kw in sent if name == "billing.tasks.process_stripe_event") == sorted(stuck)
