"""Paused jobs: beat records a paused job's slots as skipped (with the reason) instead of sending them.

A pause stops nothing that is already running; it stops beat from sending new slots and a
worker from starting a slot beat sent before the pause. A person may still run a slot
(`saas jobs run`, "Run now", backfill): that is an explicit request, and the pause is noted on
its answer. Resuming runs none of the skipped slots; `saas jobs backfill` (or `resume --backfill`)
does, once each.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from saas.core.models import AuditLog
from scheduled.models import JobPause

MAX_REASON = 500


class PauseError(ValueError):
    """A pause or resume that cannot be done (no reason, already paused, not paused)."""


def paused_jobs(session: Session) -> dict[str, JobPause]:
    """Every paused job, by name."""
    return {p.job: p for p in session.scalars(select(JobPause))}


def pause_of(session: Session, job: str) -> JobPause | None:
    return session.get(JobPause, job, populate_existing=True)


def skip_reason(pause: JobPause) -> str:
    """What a slot skipped because of this pause says in the ledger."""
    return f"paused by {pause.paused_by}: {pause.reason}"


def pause(session: Session, job: str, reason: str, actor: str, now: datetime, actor_id: int | None = None) -> JobPause:
    """Pause `job` and audit it; the caller commits. PauseError when the reason is missing or the
    job is paused already (the first pause and its reason stand)."""
    reason = " ".join(reason.split())
    if not reason:
        raise PauseError("a pause needs a reason")
    if len(reason) > MAX_REASON:
        raise PauseError(f"keep the reason under {MAX_REASON} characters")
    created = session.execute(
        insert(JobPause).values(job=job, reason=reason, paused_at=now, paused_by=actor)
        .on_conflict_do_nothing(index_elements=["job"]).returning(JobPause.job)).scalar_one_or_none()
    current = pause_of(session, job)
    assert current is not None
    if created is None:
        raise PauseError(f"{job} is already paused (by {current.paused_by} since "
                         f"{current.paused_at.isoformat(timespec='seconds')}: {current.reason})")
    session.add(AuditLog(at=now, actor=actor, actor_id=actor_id, action="job.pause", subject_type="job",
                         subject_id=job, details={"reason": reason}))
    return current


def resume(session: Session, job: str, actor: str, now: datetime, actor_id: int | None = None) -> JobPause:
    """Resume `job` and audit it (with the pause it ends); the caller commits. PauseError when it is
    not paused."""
    ended = session.execute(delete(JobPause).where(JobPause.job == job)
                            .returning(JobPause.reason, JobPause.paused_at, JobPause.paused_by)).first()
    if ended is None:
        raise PauseError(f"{job} is not paused")
    session.add(AuditLog(at=now, actor=actor, actor_id=actor_id, action="job.resume", subject_type="job",
                         subject_id=job, details={"paused_reason": ended.reason, "paused_by": ended.paused_by,
                                                  "paused_at": ended.paused_at.isoformat()}))
    return JobPause(job=job, reason=ended.reason, paused_at=ended.paused_at, paused_by=ended.paused_by)
