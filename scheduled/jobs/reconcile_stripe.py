"""reconcile-stripe: replay the Stripe events the product never received, then compare a rolling slice
of customers with Stripe and repair what differs. The domain steps are billing.reconcile's.

Events: GET /v1/events from where the previous run's listing ended (its `watermark`: the newest
event it listed; the same second is listed again, a known id is skipped), never from before the
30 days Stripe keeps (a first run, or a long outage, starts there). Each missed event is stored and
applied through the webhook's path, oldest first, as the webhooks would have come; a listed event
stored long ago but never processed (its task was lost) is queued again for the webhook's task.

Customers: the accounts whose id is the slot's day number modulo 7 (`slice_of`), so that 7
consecutive nightly slots compare every customer once a week.

The run row: scanned = events seen + objects compared, changed = events recovered + objects
repaired, and each of the four counts in `details` (COUNTS), which the finance summary adds up.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import dunning, gateway
from billing.expiry import ExpiryWindow
from billing.reconcile import check_customer, recover_event, requeue_stuck, unseen
from saas.core.models import User
from scheduled.ledger import RunContext
from scheduled.models import JobRun

JOB = "reconcile-stripe"
RETENTION = timedelta(days=30)  # Stripe lists the events of the past 30 days only
SLICES = 7  # every customer once a week
PAGE = 100  # events per lookup, and per committed batch of recovered events
CUSTOMER_BATCH = 20  # customers per committed batch (each is three or four Stripe reads, under its account lock)
STUCK_AFTER = timedelta(minutes=15)  # a stored event still unprocessed this long after arriving lost its task
COUNTS = ("events_seen", "events_recovered", "objects_compared", "objects_repaired")


def slice_of(day: date) -> int:
    """The slice of customers (user id % SLICES) compared on `day`: consecutive days take each in turn."""
    return day.toordinal() % SLICES


def listing_start(session: Session, ctx: RunContext) -> int:
    """`created[gte]` of this run's listing: the previous run's watermark, but never before the
    retention's start (30 days before the slot)."""
    floor = int((ctx.slot - RETENTION).timestamp())
    previous = session.scalar(
        select(JobRun.details["watermark"].as_integer())
        .where(JobRun.job == JOB, JobRun.dry_run.is_(False), JobRun.status == "succeeded", JobRun.slot < ctx.slot)
        .order_by(JobRun.slot.desc()).limit(1))
    return max(previous or floor, floor)


def _count(ctx: RunContext, **counts: int) -> None:
    for name, value in counts.items():
        ctx.details[name] = ctx.details.get(name, 0) + value


def reconcile_stripe(session: Session, ctx: RunContext) -> None:
    """The events first, then the slice of customers; a resumed run starts again at its phase."""
    window = ExpiryWindow(ctx.today, ctx.settings.card_expiring_days)
    _count(ctx, **dict.fromkeys(COUNTS, 0))  # every count on the row, zeros included
    if ctx.cursor("phase", "events") == "events":
        _recover_events(session, ctx, window)
    _compare_customers(session, ctx, window)


def _recover_events(session: Session, ctx: RunContext, window: ExpiryWindow) -> None:
    since = ctx.details.get("since") or listing_start(session, ctx)
    ctx.details["since"] = since
    newest, seen, page, missed, requeued = since, 0, [], [], 0

    def look(events: list[dict[str, Any]]) -> None:
        nonlocal requeued
        missed.extend(unseen(session, events))
        if not ctx.dry_run:
            requeued += requeue_stuck(session, events, ctx.now - STUCK_AFTER)

    for event in gateway.list_events(since):  # newest first, every page
        seen += 1
        newest = max(newest, event["created"])
        page.append(event)
        if len(page) == PAGE:
            look(page)
            page = []
    look(page)
    missed.reverse()  # oldest first (Stripe's order within a second, reversed too)
    ctx.details["watermark"] = newest
    _count(ctx, events_seen=seen, events_requeued=requeued)
    ctx.batch_done(session, name="phase", cursor="events", scanned=seen)
    for start in range(0, len(missed), PAGE):
        chunk: list[dict[str, Any]] = missed[start:start + PAGE]
        if ctx.dry_run:
            ctx.note("would_recover", [e["id"] for e in chunk])
            recovered = len(chunk)
        else:
            outcomes = [recover_event(session, event, window) for event in chunk]
            recovered = sum(outcome != "stored" for outcome in outcomes)
            _count(ctx, events_failed=outcomes.count("failed"))
        _count(ctx, events_recovered=recovered)
        ctx.batch_done(session, name="phase", cursor="events", changed=recovered)
    ctx.batch_done(session, name="phase", cursor="customers")


def _compare_customers(session: Session, ctx: RunContext, window: ExpiryWindow) -> None:
    ctx.details["slice"] = f"user id % {SLICES} == {slice_of(ctx.today)}"
    due = (User.stripe_customer_id.is_not(None), User.purged_at.is_(None), User.id % SLICES == slice_of(ctx.today))
    while True:
        users = session.scalars(select(User).where(User.id > ctx.cursor("customer_cursor"), *due)
                                .order_by(User.id).limit(CUSTOMER_BATCH)).all()
        if not users:
            return
        compared = repaired = 0
        for user in users:
            check = check_customer(session, user, window)
            compared += check.compared
            repaired += len(check.repairs)
            if ctx.dry_run:
                ctx.note("would_repair", check.repairs)
        if not ctx.dry_run:  # the repaired rows may open or close dunning cases whose webhook was lost
            cases = dunning.sync_cases(session, user_ids=[user.id for user in users])
            _count(ctx, dunning_cases_opened=cases["opened"], dunning_cases_closed=cases["recovered"] + cases["closed"])
        _count(ctx, objects_compared=compared, objects_repaired=repaired)
        ctx.batch_done(session, name="customer_cursor", cursor=users[-1].id, scanned=compared, changed=repaired)


def reconciliation_figures(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """The finance summary's line: the succeeded runs whose slot is in [start, end), their counts summed."""
    totals = dict.fromkeys(("runs", *COUNTS), 0)
    for details in session.scalars(select(JobRun.details).where(
            JobRun.job == JOB, JobRun.dry_run.is_(False), JobRun.status == "succeeded",
            JobRun.slot >= start, JobRun.slot < end)):
        totals["runs"] += 1
        for name in COUNTS:
            totals[name] += int((details or {}).get(name, 0))
    return totals
