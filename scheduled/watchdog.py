"""The missed-slot watchdog: emails the admins once when a slot has no run some minutes after it was due.

It runs without beat (which may be the thing that is down): a timer thread in every worker,
started by the worker_ready signal, plus the `scheduled.tasks.watchdog` task.
"""
from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session

from saas.core import runtime
from saas.core.db import session_scope
from saas.core.outbox import queue_email
from saas.core.settings import Settings
from saas.core.slots import slots_between
from scheduled import clock, ledger, pauses

log = logging.getLogger(__name__)
GRACE = timedelta(minutes=10)
CHECK_EVERY = timedelta(minutes=2)


def check_missed_slots(session: Session, now: datetime, settings: Settings) -> list[tuple[str, datetime]]:
    """Queue one admin email per slot due more than GRACE ago (within the catch-up window) with no run.

    Paused jobs are left out. Returns the newly reported (job, slot) pairs; the caller commits.
    """
    reported = []
    paused = pauses.paused_jobs(session)
    for job, cron in settings.schedules.items():
        if job in paused:  # a paused job is not expected to run; beat records its slots as skipped
            continue
        due = slots_between(cron, settings.tz, now - settings.catchup_window, now - GRACE)
        if not due:
            continue
        for slot in ledger.slots_without_run(session, job, due):
            slot_iso = slot.astimezone(UTC).isoformat()
            context = {"job": job, "slot": slot_iso, "window": str(settings.catchup_window),
                       "slot_local": slot.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M %Z"),
                       "minutes": int((now - slot).total_seconds() // 60)}
            if queue_email(session, key=f"missed-slot:{job}:{slot_iso}", kind="missed-slot",
                           to=", ".join(settings.admin_emails), template="missed_slot", context=context):
                log.error("job %s slot %s has no run %s after it was due", job, slot_iso, GRACE)
                reported.append((job, slot))
    return reported


def run_check(settings: Settings, now: datetime | None = None) -> int:
    with session_scope() as session:
        return len(check_missed_slots(session, now or clock.now(), settings))


class _Timer:
    """A daemon thread that runs the check every CHECK_EVERY until stopped."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="missed-slot-watchdog", daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(CHECK_EVERY.total_seconds()):
            try:
                run_check(runtime.settings())
            except Exception:
                log.exception("missed-slot watchdog check failed")


_timer: list[_Timer] = []


@worker_ready.connect
def start_in_worker(**_kwargs) -> None:
    """Start the timer in a `celery worker` process (not in the test harness's embedded worker)."""
    if not _timer:
        _timer.append(_Timer())
        _timer[0].thread.start()


@worker_shutdown.connect
def stop_in_worker(**_kwargs) -> None:
    if _timer:
        _timer.pop().stop.set()
