"""Backfill: run the slots of a range that never ran to their end, oldest first, through the ledger.

A slot is backfilled when it has no run, or its run was `skipped` (paused, missed, before the
first run) or `failed`. A slot that succeeded, or is running, is left alone. Each slot is
claimed like any other run, so a backfill racing beat (or another backfill) runs a slot once:
whoever loses the claim does nothing.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from saas.core.db import session_scope
from saas.core.settings import Settings
from saas.core.slots import slots_between
from scheduled import clock, runner
from scheduled.models import JobRun

log = logging.getLogger(__name__)
MAX_BACKFILL_SLOTS = 100  # per request: a quarter of a daily job, four days of an hourly one
BACKFILL_STATUSES = ("skipped", "failed")  # besides a slot with no run at all


class BackfillError(ValueError):
    """A range that cannot be backfilled; the message says why."""


@dataclass
class SlotPlan:
    """One slot of the range and what a backfill does with it."""

    slot: datetime
    run: JobRun | None  # its real run, if it has one

    @property
    def wanted(self) -> bool:
        return self.run is None or self.run.status in BACKFILL_STATUSES

    def describe(self) -> str:
        if self.run is None:
            return "no run"
        return f"run #{self.run.id}, {self.run.status}"


@dataclass
class SlotResult:
    plan: SlotPlan
    run: JobRun | None  # the run this backfill made; None when someone else held the slot


def plan_backfill(session: Session, name: str, settings: Settings, start: datetime, end: datetime,
                  now: datetime) -> list[SlotPlan]:
    """Each slot of `name` with start <= slot <= end, oldest first, with its run; BackfillError for
    a range that is reversed, in the future, or holds more than MAX_BACKFILL_SLOTS slots."""
    cron = runner.check_job(name, settings)
    if start > end:
        raise BackfillError(f"--from ({start.isoformat()}) is after --to ({end.isoformat()})")
    if end > now:
        raise BackfillError(f"--to ({end.isoformat()}) is in the future; a backfill runs slots that have passed")
    slots = slots_between(cron, settings.tz, start - timedelta(microseconds=1), end)
    if len(slots) > MAX_BACKFILL_SLOTS:
        raise BackfillError(f"the range holds {len(slots)} slots of {name}; backfill at most "
                            f"{MAX_BACKFILL_SLOTS} at a time (narrow --from/--to)")
    runs = {r.slot: r for r in session.scalars(select(JobRun).where(
        JobRun.job == name, JobRun.dry_run.is_(False), JobRun.slot.in_(slots)))} if slots else {}
    return [SlotPlan(slot, runs.get(slot)) for slot in slots]


def run_backfill(name: str, settings: Settings, slots: list[datetime], dry_run: bool = False,
                 on_result: Callable[[SlotResult], None] | None = None) -> list[SlotResult]:
    """Run each of `slots` that still needs it, oldest first, as a person's explicit run.

    Stops after the first failed slot, so a later slot never runs before an earlier one
    succeeded; the failed one is retried by the next backfill. A dry run runs every slot dry and
    changes nothing.
    """
    results: list[SlotResult] = []
    for slot in sorted(slots):
        with session_scope() as session:
            existing = session.scalars(select(JobRun).where(
                JobRun.job == name, JobRun.dry_run.is_(False), JobRun.slot == slot)).first()
            session.expunge_all()
        plan = SlotPlan(slot, existing)
        if not plan.wanted:
            continue
        run = runner.run_job(name, settings, slot, dry_run=dry_run, explicit=True)
        result = SlotResult(plan, run)
        results.append(result)
        if on_result is not None:
            on_result(result)
        if run is not None and run.status == "failed":
            log.warning("backfill of %s stopped at slot %s: it failed", name, slot.isoformat())
            break
    return results


def backfill_range(name: str, settings: Settings, start: datetime, end: datetime, dry_run: bool = False,
                   on_result: Callable[[SlotResult], None] | None = None) -> tuple[list[SlotPlan], list[SlotResult]]:
    """Plan the range (BackfillError when it is bad) and run what needs running."""
    with session_scope() as session:
        plans = plan_backfill(session, name, settings, start, end, clock.now())
        session.expunge_all()
    wanted = [p.slot for p in plans if p.wanted]
    return plans, run_backfill(name, settings, wanted, dry_run=dry_run, on_result=on_result)
