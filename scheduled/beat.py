"""The beat scheduler: RedBeat (Redis-backed, one leader among replicas) plus slot dispatch.

Every tick sends each due slot of each nightly job as a task carrying the slot. Sending is
at-least-once: a Redis marker per (job, slot, attempt) keeps ticks (and replicas) from resending a
slot that is queued but not claimed yet, and the ledger's unique (job, slot) makes any duplicate a
logged no-op. Slots missed within CATCHUP_WINDOW are sent oldest first; older ones are recorded
as `skipped`. A paused job's due slots are recorded as `skipped` with the pause's reason.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from redbeat import RedBeatScheduler
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from saas.core import redis_client, runtime
from saas.core.db import session_scope
from saas.core.queue import enqueue
from saas.core.settings import DISPATCH_INTERVAL, Settings
from saas.core.slots import latest_slot, slots_between
from scheduled import clock, ledger, pauses
from scheduled.models import JobRun
from scheduled.tasks import run_job

log = logging.getLogger(__name__)
SENT_KEY = "saas:slot-sent:{job}:{slot}:{attempt}"
SENT_TTL = timedelta(minutes=30)  # after this an unclaimed slot is sent again (a lost message)
# Set the marker unless one was set less than SENT_TTL ago by the dispatch clock (ARGV: now, now - SENT_TTL
# as epoch seconds, the key's expiry). The age is the clock's, not the key's EX: scheduled.clock is the
# time slots are measured against (a test clock runs days in seconds; EX would hold a lost slot for 30
# real minutes). EX only cleans up. One script, so two beats cannot both take a stale marker.
_MARK_SENT = """
local old = tonumber(redis.call('GET', KEYS[1]))
if old and old > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""
# Per job and tick (docs/operations.md): after a longer outage the ledger shows the newest 100
# missed slots and the warning log line counts them all.
MAX_SKIPPED_RECORDED = 100
DISPATCH_EVERY = DISPATCH_INTERVAL  # CATCHUP_WINDOW is refused below it


def send_run(job: str, slot_iso: str) -> None:
    enqueue(run_job, job=job, slot_iso=slot_iso)


def mark_sent(redis, key: str, now: datetime) -> bool:
    """Mark a slot's attempt as sent at `now`; False when it was marked less than SENT_TTL before."""
    ttl = int(SENT_TTL.total_seconds())
    return bool(redis.eval(_MARK_SENT, 1, key, repr(now.timestamp()), repr((now - SENT_TTL).timestamp()), ttl))


def dispatch_due(now: datetime, redis, session: Session, settings: Settings,
                 send: Callable[[str, str], None] = send_run) -> list[tuple[str, datetime]]:
    """Send every due, unclaimed slot within the window; record older missed ones as skipped.

    Returns the (job, slot) pairs sent by this call. Safe to call from any number of
    schedulers at once.
    """
    window_start = now - settings.catchup_window
    sent: list[tuple[str, datetime]] = []
    paused = pauses.paused_jobs(session)
    for job, cron in settings.schedules.items():
        newest = session.scalar(select(func.max(JobRun.slot)).where(JobRun.job == job, JobRun.dry_run.is_(False)))
        if newest is None:
            # A fresh install missed nothing: its schedule starts at the next slot (deploying must
            # not run last night's purge at once). Past slots in the window (or the latest one)
            # are recorded as skipped, and they are the baseline later catch-ups count from.
            latest = latest_slot(cron, settings.tz, now)
            baseline = slots_between(cron, settings.tz, window_start, now) or ([latest] if latest else [])
            if baseline:
                ledger.record_skipped(session, job, baseline, now, ledger.FIRST_START_SKIP)
                session.commit()
                log.info("job %s: first start; %s past slots recorded as skipped", job, len(baseline))
            continue
        if newest < window_start:
            missed = slots_between(cron, settings.tz, newest, window_start)
            if missed:
                recorded = ledger.record_skipped(
                    session, job, missed[-MAX_SKIPPED_RECORDED:], now,
                    f"missed while no beat ran; older than the catch-up window ({settings.catchup_window})")
                session.commit()
                log.warning("job %s: %s missed slots older than the catch-up window recorded as skipped "
                            "(%s in all)", job, recorded, len(missed))
        due = slots_between(cron, settings.tz, window_start, now)
        if not due:
            continue
        if job in paused:  # each slot that passes while paused is in the ledger as skipped, with the reason
            recorded = ledger.record_skipped(session, job, due, now, pauses.skip_reason(paused[job]))
            if recorded:
                log.info("job %s is paused: %s slots recorded as skipped", job, recorded)
            continue
        # A dead run's slot is resent as its next attempt, with a marker of its own: the first attempt's
        # marker must not hold back the takeover.
        for slot, attempt in ledger.slots_to_send(session, job, due, now):
            slot_iso = slot.astimezone(UTC).isoformat()
            key = SENT_KEY.format(job=job, slot=slot_iso, attempt=attempt)
            if not mark_sent(redis, key, now):
                continue
            try:
                send(job, slot_iso)
            except Exception:
                redis.delete(key)  # the next tick tries again
                log.error("could not send job %s slot %s", job, slot_iso, exc_info=True)
                continue
            log.info("sent job %s slot %s", job, slot_iso)
            sent.append((job, slot))
    session.commit()
    return sent


class SlotScheduler(RedBeatScheduler):
    """RedBeat's leader lock and persistent entries; the nightly jobs are dispatched per slot."""

    _next_dispatch: datetime | None = None

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        real_now = datetime.now(UTC)  # the throttle runs on real time, even under a test clock
        if self._next_dispatch is None or real_now >= self._next_dispatch:
            self._next_dispatch = real_now + DISPATCH_EVERY
            try:
                with session_scope() as session:
                    dispatch_due(clock.now(), redis_client.get(), session, runtime.settings())
            except Exception:  # a database hiccup must not stop beat; the next tick retries
                log.exception("slot dispatch failed")
        return interval
