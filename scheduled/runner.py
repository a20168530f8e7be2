"""Run one slot of a job through the ledger (the task, the CLI and the admin page), and list jobs."""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from saas.core.db import session_scope
from saas.core.settings import Settings
from saas.core.slots import latest_slot, next_slot
from scheduled import clock, ledger
from scheduled.jobs import JOBS
from scheduled.models import JobRun

log = logging.getLogger(__name__)


class UnknownJob(ValueError):
    """The name is not one of the jobs."""


def check_job(name: str, settings: Settings) -> str:
    """The job's cron string; UnknownJob names the job and the known ones."""
    if name not in JOBS:
        raise UnknownJob(f"unknown job {name!r} (known: {', '.join(JOBS)})")
    return settings.schedules[name]


def run_job(name: str, settings: Settings, slot: datetime | None = None, dry_run: bool = False, now: datetime | None = None,
            after_batch=None, explicit: bool = False) -> JobRun | None:
    """Claim (name, slot) and run it; None when another run owns the slot.

    `slot` defaults to the newest slot at or before `now`. A failure is recorded on the run
    (status failed, error) and the run is returned; the next attempt resumes at its cursor.
    `explicit` marks a person's request, which may run a slot recorded as skipped.
    """
    cron = check_job(name, settings)
    frozen = now is not None
    now = now or clock.now()
    if slot is None:
        slot = latest_slot(cron, settings.tz, now)
        if slot is None:
            raise ValueError(f"{name} has no slot at or before {now.isoformat()}")
    slot = slot.astimezone(UTC)
    with session_scope() as session:
        run = ledger.claim(session, name, slot, now, dry_run=dry_run, explicit=explicit)
        if run is None:
            return None
        ctx = ledger.RunContext(job=name, slot=slot, now=now, dry_run=dry_run, frozen_clock=frozen,
                                run_id=run.id, details=dict(run.details or {}), settings=settings,
                                scanned=run.scanned, changed=run.changed, emails_queued=run.emails_queued,
                                after_batch=after_batch)
        try:
            JOBS[name](session, ctx)
        except Exception as exc:
            session.rollback()
            log.exception("job %s slot %s failed", name, slot.isoformat())
            return ledger.finish(session, run.id, "failed", _clock(now, frozen), error=f"{type(exc).__name__}: {exc}"[:4000])
        status = "succeeded"
        result = ledger.finish(session, run.id, status, _clock(now, frozen), details=ctx.details)
        log.info("job %s slot %s %s: scanned %s, changed %s, emails %s%s", name, slot.isoformat(), status,
                 result.scanned, result.changed, result.emails_queued, " (dry run)" if dry_run else "")
        return result


def _clock(now: datetime, frozen: bool) -> datetime:
    return now if frozen else clock.now()


def recent_runs(session: Session, name: str | None = None, limit: int = 20) -> list[JobRun]:
    """Newest runs first, of one job or of all."""
    stmt = select(JobRun).order_by(JobRun.slot.desc(), JobRun.id.desc()).limit(limit)
    if name:
        stmt = stmt.where(JobRun.job == name)
    return list(session.scalars(stmt))


def job_overview(session: Session, settings: Settings, now: datetime, runs_per_job: int = 5) -> list[dict[str, Any]]:
    """For the admin jobs page: each job's cron, time zone, next slot and last few runs."""
    return [{
        "name": name,
        "cron": settings.schedules[name],
        "timezone": settings.app_timezone,
        "next_run": next_slot(settings.schedules[name], settings.tz, now),
        "runs": recent_runs(session, name, runs_per_job),
    } for name in JOBS]
