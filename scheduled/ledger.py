"""The job ledger: claim (job, slot) before any work, take over dead runs, record the outcome."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import literal, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from saas.core.settings import Settings
from scheduled import clock
from scheduled.models import JobRun

log = logging.getLogger(__name__)
# A running run whose heartbeat is older than this died with its worker; the next attempt takes
# over. Every batch beats, and a batch takes seconds, so this is generous.
STALE_AFTER = timedelta(minutes=15)
BATCH_SIZE = 5000
DETAIL_LIST_LIMIT = 1000  # a dry run lists at most this many items per list


def claim(session: Session, job: str, slot: datetime, now: datetime, dry_run: bool = False,
          explicit: bool = False) -> JobRun | None:
    """Claim (job, slot) and commit; None when another run owns it (logged, not an error).

    A dry run always gets its own row (the unique index ignores dry runs). A run still
    `running` with a stale heartbeat, or one that `failed`, is taken over: attempts + 1, and its
    batch cursor in `details` is kept so finished batches are not redone. A `skipped` slot never
    ran, so an explicit run (a person's `saas jobs run` or "Run now") may claim it; beat never does.
    A takeover restarts `started_at`: a run's duration is its latest attempt's (a skipped slot run
    a day later shows its own run time, not the day).
    """
    if dry_run:
        run = JobRun(job=job, slot=slot, dry_run=True, status="running", started_at=now, heartbeat_at=now,
                     details={})
        session.add(run)
        session.commit()
        return run
    run_id = session.execute(
        insert(JobRun)
        .values(job=job, slot=slot, dry_run=False, status="running", started_at=now, heartbeat_at=now,
                attempts=1, scanned=0, changed=0, emails_queued=0, details={})
        .on_conflict_do_nothing(index_elements=["job", "slot"], index_where=text("NOT dry_run"))
        .returning(JobRun.id)
    ).scalar_one_or_none()
    if run_id is None:
        run_id = session.execute(
            update(JobRun)
            .where(JobRun.job == job, JobRun.slot == slot, JobRun.dry_run.is_(False),
                   ((JobRun.status == "running") & (JobRun.heartbeat_at < now - STALE_AFTER))
                   | (JobRun.status == "failed")
                   | ((JobRun.status == "skipped") & literal(explicit)))
            .values(status="running", attempts=JobRun.attempts + 1, started_at=now, heartbeat_at=now,
                    finished_at=None, error=None)
            .returning(JobRun.id)
        ).scalar_one_or_none()
        if run_id is not None:
            log.warning("job %s slot %s: taking over an unfinished run (#%s)", job, slot.isoformat(), run_id)
    session.commit()
    if run_id is None:
        current = session.scalars(select(JobRun).where(
            JobRun.job == job, JobRun.slot == slot, JobRun.dry_run.is_(False))).first()
        log.info("job %s slot %s already claimed (run #%s, %s); nothing to do", job, slot.isoformat(),
                 current.id if current else "?", current.status if current else "?")
        return None
    return session.get(JobRun, run_id, populate_existing=True)


def finish(session: Session, run_id: int, status: str, now: datetime, error: str | None = None,
           details: dict[str, Any] | None = None) -> JobRun:
    """Record the end of a run and commit."""
    values: dict[str, Any] = {"status": status, "finished_at": now, "heartbeat_at": now, "error": error}
    if details is not None:
        values["details"] = details
    session.execute(update(JobRun).where(JobRun.id == run_id).values(**values))
    session.commit()
    return session.get_one(JobRun, run_id, populate_existing=True)


def existing_run(session: Session, job: str, slot: datetime) -> JobRun | None:
    """The real (not dry) run of a slot, if any."""
    return session.scalars(select(JobRun).where(
        JobRun.job == job, JobRun.slot == slot, JobRun.dry_run.is_(False))).first()


def slots_without_run(session: Session, job: str, slots: list[datetime]) -> list[datetime]:
    """Those of `slots` with no real run row."""
    if not slots:
        return []
    have = set(session.scalars(select(JobRun.slot).where(
        JobRun.job == job, JobRun.dry_run.is_(False), JobRun.slot.in_(slots))))
    return [slot for slot in slots if slot not in have]


def slots_to_send(session: Session, job: str, slots: list[datetime], now: datetime) -> list[tuple[datetime, int]]:
    """Those of `slots` that need a message, each with the attempt it would be: 1 for a slot with no
    real run row, and the attempt after the last for a run that died (still `running`, its heartbeat
    older than STALE_AFTER), which the next attempt takes over."""
    if not slots:
        return []
    rows = session.execute(select(JobRun.slot, JobRun.status, JobRun.heartbeat_at, JobRun.attempts).where(
        JobRun.job == job, JobRun.dry_run.is_(False), JobRun.slot.in_(slots))).all()
    runs = {row.slot: row for row in rows}
    send = []
    for slot in slots:
        run = runs.get(slot)
        if run is None:
            send.append((slot, 1))
        elif run.status == "running" and run.heartbeat_at < now - STALE_AFTER:
            send.append((slot, run.attempts + 1))
    return send


# The reason on the slots a fresh install records as skipped: a baseline, not a missed run.
FIRST_START_SKIP = "before this job's first run: its schedule starts at the next slot"


def record_skipped(session: Session, job: str, slots: list[datetime], now: datetime, reason: str) -> int:
    """Record missed slots as `skipped` rows (idempotent); returns how many were new."""
    if not slots:
        return 0
    rows = [{"job": job, "slot": s, "dry_run": False, "status": "skipped", "started_at": now,
             "heartbeat_at": now, "finished_at": now, "attempts": 0, "scanned": 0, "changed": 0,
             "emails_queued": 0, "error": reason, "details": {}} for s in slots]
    result = session.execute(
        insert(JobRun).values(rows)
        .on_conflict_do_nothing(index_elements=["job", "slot"], index_where=text("NOT dry_run"))
        .returning(JobRun.id)
    )
    return len(result.all())


@dataclass
class RunContext:
    """What a job needs to know about its run: the slot, the clock, dry run, and its batch cursor.

    Jobs call `batch_done` after each batch: the batch's writes, the counts and the cursor are
    committed together (a dry run rolls the batch's writes back and keeps only the counts).
    """

    job: str
    slot: datetime
    settings: Settings
    now: datetime = field(default_factory=clock.now)
    dry_run: bool = False
    frozen_clock: bool = False  # a caller-given `now` (tests, --at) also stamps heartbeats
    run_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    batch_size: int = field(default_factory=lambda: BATCH_SIZE)
    scanned: int = 0
    changed: int = 0
    emails_queued: int = 0
    # Called after each committed batch; tests use it to kill a run half way.
    after_batch: Callable[[RunContext], None] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.tz

    @property
    def today(self) -> date:
        """The slot's date in APP_TIMEZONE: the date the job works for."""
        return self.slot.astimezone(self.tz).date()

    def cursor(self, name: str = "cursor", default: Any = 0) -> Any:
        return self.details.get(name, default)

    def note(self, name: str, items: list[Any]) -> None:
        """Append items to a bounded list in details (what a dry run would do)."""
        bucket = self.details.setdefault(name, [])
        room = DETAIL_LIST_LIMIT - len(bucket)
        bucket.extend(items[:max(room, 0)])

    def batch_done(self, session: Session, *, cursor: Any, name: str = "cursor", scanned: int = 0,
                   changed: int = 0, emails: int = 0) -> None:
        """Commit the batch with its counts and cursor (roll its writes back in a dry run)."""
        if self.dry_run:
            session.rollback()
        self.scanned += scanned
        self.changed += changed
        self.emails_queued += emails
        self.details[name] = cursor
        if self.run_id is not None:
            session.execute(update(JobRun).where(JobRun.id == self.run_id).values(
                scanned=JobRun.scanned + scanned, changed=JobRun.changed + changed,
                emails_queued=JobRun.emails_queued + emails, details=dict(self.details),
                heartbeat_at=self.now if self.frozen_clock else clock.now(),
            ))
        session.commit()
        if self.after_batch is not None:
            self.after_batch(self)
