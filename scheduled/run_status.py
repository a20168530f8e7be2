"""What the jobs page polls: the runs in flight and a fingerprint of the ledger that changes with it."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduled.ledger import STALE_AFTER
from scheduled.models import JobRun


def in_flight(session: Session, now: datetime) -> list[JobRun]:
    """Runs still `running` whose worker is alive (a heartbeat within STALE_AFTER), dry runs included."""
    return list(session.scalars(select(JobRun).where(
        JobRun.status == "running", JobRun.heartbeat_at >= now - STALE_AFTER).order_by(JobRun.id)))


def started_since(session: Session, job: str, since: datetime) -> bool:
    """Whether a run of `job` (dry or real) was claimed at or after `since`: a queued "Run now" began."""
    return (session.scalar(select(func.count()).select_from(JobRun).where(
        JobRun.job == job, JobRun.started_at >= since, JobRun.status != "skipped")) or 0) > 0


def fingerprint(session: Session) -> str:
    """Changes whenever a run is added, claimed, finishes or reports a batch."""
    count, newest, touched = session.execute(select(
        func.count(), func.max(JobRun.id), func.max(func.greatest(JobRun.heartbeat_at, JobRun.finished_at)))).one()
    return f"{count}:{newest or 0}:{touched.isoformat() if touched else '-'}"
