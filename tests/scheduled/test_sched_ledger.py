"""The ledger: one effect per slot across real processes; a killed run resumes without resending."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.settings import ROOT
from scheduled import ledger
from scheduled.models import JobRun
from scheduled.runner import run_job

SLOT = datetime(2025, 5, 10, tzinfo=UTC)
CLAIM = """
import sys
from datetime import datetime
from saas.core import runtime
from saas.core.settings import Settings
from scheduled.runner import run_job
settings = runtime.configure(Settings.from_env())  # an entry point: this process's settings
run = run_job("flag-expiring-cards", settings, datetime.fromisoformat(sys.argv[1]))
print("ran" if run else "lost")
"""


def test_same_slot_from_two_processes_has_one_effect(make_user, card, outbox_keys):
    for _ in range(20):
        card(make_user().id, 5, 2025)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, SLOT.isoformat()], cwd=ROOT, env=os.environ.copy(),
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["lost", "ran"]
    assert len(outbox_keys("card-expiring")) == 20
    with session_scope() as s:
        assert [(r.status, r.attempts, r.emails_queued) for r in s.scalars(select(JobRun))] == [("succeeded", 1, 20)]


class Killed(BaseException):
    """Stands in for kill -9: nothing after it runs, the run row stays `running`."""


def test_killed_run_is_taken_over_and_sends_every_email_once(settings, make_user, monkeypatch, outbox_keys):
    monkeypatch.setattr(ledger, "BATCH_SIZE", 3)
    seen = datetime(2024, 1, 1, tzinfo=UTC)
    users = [make_user(last_seen_at=seen) for _ in range(8)]

    def kill_after_first_batch(ctx):
        raise Killed

    with pytest.raises(Killed):
        run_job("remind-inactive-users", settings, SLOT, now=SLOT, after_batch=kill_after_first_batch)
    assert len(outbox_keys()) == 3
    # Too early: the heartbeat is fresh, so the slot is still owned.
    assert run_job("remind-inactive-users", settings, SLOT, now=SLOT + timedelta(minutes=5)) is None
    run = run_job("remind-inactive-users", settings, SLOT, now=SLOT + ledger.STALE_AFTER + timedelta(minutes=1))
    assert (run.status, run.attempts, run.scanned, run.emails_queued) == ("succeeded", 2, 8, 8)
    assert sorted(outbox_keys()) == sorted(f"inactive-warning:{u.id}:{seen.isoformat(timespec='microseconds')}" for u in users)
    assert run_job("remind-inactive-users", settings, SLOT, now=SLOT + timedelta(hours=2)) is None


def test_failed_run_is_recorded_and_retried(settings, monkeypatch):
    import scheduled.runner as runner

    def broken(session, ctx):
        raise RuntimeError("database went away")

    monkeypatch.setitem(runner.JOBS, "finance-summary", broken)
    run = run_job("finance-summary", settings, SLOT, now=SLOT)
    assert (run.status, run.error) == ("failed", "RuntimeError: database went away")
    monkeypatch.undo()
    run = run_job("finance-summary", settings, SLOT, now=SLOT)
    assert (run.status, run.attempts) == ("succeeded", 2)
