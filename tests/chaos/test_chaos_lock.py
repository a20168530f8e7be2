"""Chaos: the beat leader frozen (SIGSTOP) past RedBeat's lock timeout, a standby takes over, the
old leader thawed (SIGCONT) while the new one runs: still exactly one run per slot."""
from __future__ import annotations

import collections
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
from chaos_cluster import Cluster, wait_until
from sqlalchemy import select

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]
START = datetime(2032, 5, 10, 6, 30, tzinfo=UTC)
LOCK_TIMEOUT = 30  # redbeat_lock_timeout in scheduled.celery_app
DAY_EVERY = 3.0  # real seconds per fake day
BEATS = ("beat-1", "beat-2", "beat-3")


def acquired(cluster: Cluster, name: str) -> bool:
    """Whether this beat's current process logged that it took RedBeat's lock."""
    text = (cluster.workdir / f"{name}.log").read_text(errors="replace")
    return text.rfind("beat: Acquired lock") > text.rfind("beat: Starting...")


def test_frozen_leader_resumes_after_a_standby_took_over(services, wide_catchup_window, tmp_path):
    from saas.core.db import session_scope
    from saas.core.settings import Settings
    from saas.core.slots import slots_between
    from scheduled.models import JobRun

    cluster = Cluster(tmp_path, services["database_url"], START)
    day = 0

    def next_day() -> None:
        nonlocal day
        day += 1
        cluster.advance(START + timedelta(days=day))

    def days_pass(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(DAY_EVERY)
            next_day()

    try:
        for name in BEATS:
            cluster.start(name, "beat")
        for name in ("worker-1", "worker-2"):
            cluster.start(name, "worker")
        assert wait_until(lambda: any(acquired(cluster, b) for b in BEATS), 60)
        old = next(b for b in BEATS if acquired(cluster, b))
        days_pass(4 * DAY_EVERY)

        cluster.signal(old, signal.SIGSTOP)
        stopped_at = time.monotonic()
        took_over = []

        def standby_took_over() -> bool:
            took_over[:] = [b for b in BEATS if b != old and acquired(cluster, b)]
            return bool(took_over)

        assert wait_until(standby_took_over, LOCK_TIMEOUT * 3, every=DAY_EVERY, on_tick=next_day), \
            cluster.log_tail(BEATS[1])
        paused = time.monotonic() - stopped_at
        days_pass(3 * DAY_EVERY)  # the new leader dispatches; the old one is still frozen
        cluster.signal(old, signal.SIGCONT)
        days_pass(4 * DAY_EVERY)  # both alive: the old leader finds its lock gone
        old_exit = cluster.procs[old].poll()
        final = cluster.clock
        settings = Settings.from_env(cluster.env)  # what the cluster's processes read
        expected = {job: set(slots_between(cron, settings.tz, START, final))
                    for job, cron in settings.schedules.items()}

        def settled() -> bool:
            with session_scope() as s:
                done = set(s.execute(select(JobRun.job, JobRun.slot).where(
                    ~JobRun.dry_run, JobRun.status == "succeeded")).all())
            return all((job, slot) in done for job, slots in expected.items() for slot in slots)

        ok = wait_until(settled, 60, every=1.0)
        with session_scope() as s:
            runs = s.execute(select(JobRun.job, JobRun.slot, JobRun.status).where(~JobRun.dry_run)).all()
        old_log = cluster.log_tail(old, 12)
    finally:
        cluster.close()

    per_slot = collections.Counter((job, slot) for job, slot, _status in runs)
    after_start = [(job, slot, status) for job, slot, status in runs if slot > START]
    print(f"\nCHAOS lock: {old} frozen {paused:.0f}s (lock timeout {LOCK_TIMEOUT}s), {took_over[0]} took over; "
          f"old leader after SIGCONT: {'exited ' + str(old_exit) if old_exit is not None else 'still running'}; "
          f"{len(after_start)} slots after start, {max(per_slot.values())} run(s) per slot at most")
    assert ok, old_log
    assert max(per_slot.values()) == 1
    assert {(job, slot) for job, slot, _status in after_start} == \
        {(job, slot) for job, slots in expected.items() for slot in slots}
    assert all(status == "succeeded" for *_key, status in after_start)
    assert paused >= LOCK_TIMEOUT
