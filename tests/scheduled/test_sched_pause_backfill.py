"""Pause, resume and backfill: beat on a moved clock records paused slots as skipped, the watchdog
stays quiet, resuming runs nothing, backfill runs the range oldest first and once per slot."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from saas.cli.job_control import cli_actor
from saas.cli.jobs import jobs_group
from saas.core.db import session_scope
from saas.core.models import AuditLog
from scheduled import backfill, ledger
from scheduled.beat import dispatch_due
from scheduled.jobs import JOBS
from scheduled.models import JobRun
from scheduled.runner import run_job
from scheduled.watchdog import check_missed_slots
from tests.helpers import utc

JOB = "flag-expiring-cards"  # 0 0 * * * (the default schedule, which the commands read too)


def real_runs(job: str = JOB) -> list[tuple[datetime, str, int]]:
    with session_scope() as s:
        return [(r.slot, r.status, r.attempts) for r in s.scalars(
            select(JobRun).where(JobRun.job == job, JobRun.dry_run.is_(False)).order_by(JobRun.slot))]


def audit_actions() -> list[tuple[str, str | None, dict]]:
    with session_scope() as s:
        return [(a.action, a.subject_id, a.details) for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]


def tick(now: datetime, redis_client, settings, job: str = JOB) -> list[str]:
    """One beat dispatch at `now`; the slots it sent of `job` (nothing is run)."""
    sent: list[str] = []
    with session_scope() as s:
        dispatch_due(now, redis_client, s, settings, send=lambda name, slot: sent.append(slot) if name == job else None)
    return sent


def only_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_paused_slots_are_skipped_with_the_reason_and_resume_runs_none_of_them(runner, settings, redis_client):
    run_job(JOB, settings, utc(2025, 3, 1), now=utc(2025, 3, 1))  # it has run before: not a fresh install
    paused = runner.invoke(jobs_group, ["pause", JOB, "--reason", "card vendor outage"])
    assert paused.exit_code == 0 and "paused" in paused.output, paused.output
    for day in (2, 3):  # beat ticks on a moved clock while the job is paused
        assert tick(utc(2025, 3, day, 0, 1), redis_client, settings) == []
    assert real_runs() == [(utc(2025, 3, 1), "succeeded", 1), (utc(2025, 3, 2), "skipped", 0),
                           (utc(2025, 3, 3), "skipped", 0)]
    with session_scope() as s:
        reasons = {r.error for r in s.scalars(select(JobRun).where(JobRun.status == "skipped", JobRun.job == JOB))}
        assert reasons == {f"paused by {cli_actor()}: card vendor outage"}
        # No beat ticked at 03-04 00:00: the watchdog does not alarm for the paused job's slot.
        assert JOB not in {job for job, _slot in check_missed_slots(s, utc(2025, 3, 4, 1), settings)}
        s.rollback()
    history = runner.invoke(jobs_group, ["history", JOB])
    assert history.output.count("card vendor outage") == 2

    resumed = runner.invoke(jobs_group, ["resume", JOB])
    assert resumed.exit_code == 0 and "resumed" in resumed.output and "2 slot(s) were skipped" in resumed.output
    sent = tick(utc(2025, 3, 4, 0, 1), redis_client, settings)
    assert sent == [utc(2025, 3, 4).isoformat()]  # the new slot only; the skipped ones stay skipped
    with session_scope() as s:  # resumed, the same unrun slot is alarmed for (the fake send ran nothing)
        assert (JOB, utc(2025, 3, 4)) in check_missed_slots(s, utc(2025, 3, 4, 1), settings)
        s.rollback()
    assert [a[:2] for a in audit_actions()] == [("job.pause", JOB), ("job.resume", JOB)]
    assert audit_actions()[0][2] == {"reason": "card vendor outage"}


def test_a_slot_sent_before_the_pause_is_skipped_by_the_worker(runner, settings):
    runner.invoke(jobs_group, ["pause", JOB, "--reason", "hold"])
    assert run_job(JOB, settings, utc(2025, 3, 5), now=utc(2025, 3, 5)) is None  # beat's task, after the pause
    assert real_runs() == [(utc(2025, 3, 5), "skipped", 0)]
    # A person's explicit run still goes ahead (the CLI says the job stays paused).
    result = runner.invoke(jobs_group, ["run", JOB, "--at", "2025-03-05T12:00:00+00:00"])
    assert result.exit_code == 0 and "is paused" in result.output and ": succeeded" in result.output, result.output
    assert real_runs() == [(utc(2025, 3, 5), "succeeded", 1)]


def test_pause_and_resume_refuse_clearly(runner):
    assert "unknown job 'nope'" in only_error_line(runner.invoke(jobs_group, ["pause", "nope", "--reason", "x"]))
    assert "needs a reason" in only_error_line(runner.invoke(jobs_group, ["pause", JOB]))
    assert "is not paused" in only_error_line(runner.invoke(jobs_group, ["resume", JOB]))
    runner.invoke(jobs_group, ["pause", JOB, "--reason", "first"])
    assert "already paused" in only_error_line(runner.invoke(jobs_group, ["pause", JOB, "--reason", "second"]))
    assert [a[0] for a in audit_actions()] == ["job.pause"]


def test_backfill_runs_missing_and_skipped_slots_oldest_first_and_once(runner, settings, monkeypatch):
    order: list[datetime] = []
    real = JOBS[JOB]
    monkeypatch.setitem(JOBS, JOB, lambda session, ctx: (order.append(ctx.slot), real(session, ctx))[1])
    run_job(JOB, settings, utc(2025, 4, 2), now=utc(2025, 4, 2))  # ran
    with session_scope() as s:
        ledger.record_skipped(s, JOB, [utc(2025, 4, 3)], utc(2025, 4, 3), "paused by cli:x: test")
        s.commit()
    order.clear()
    # 04-01, 04-04, 04-05 have no run at all; 04-03 was skipped; 04-02 ran.
    result = runner.invoke(jobs_group, ["backfill", JOB, "--from", "2025-04-01", "--to", "2025-04-05T00:00:00+00:00"])
    assert result.exit_code == 0, result.output
    assert "5 slot(s) in the range, 4 to run" in result.output and "left alone" in result.output
    assert order == [utc(2025, 4, d) for d in (1, 3, 4, 5)]
    assert real_runs() == [(utc(2025, 4, d), "succeeded", 1) for d in range(1, 6)]
    again = runner.invoke(jobs_group, ["backfill", JOB, "--from", "2025-04-01", "--to", "2025-04-05"])
    assert "0 to run" in again.output and "No slot to run." in again.output and len(order) == 4


def test_backfill_dry_run_changes_nothing(runner):
    result = runner.invoke(jobs_group, ["backfill", JOB, "--from", "2025-04-01", "--to", "2025-04-02", "--dry-run"])
    assert result.exit_code == 0 and result.output.count("(dry run): succeeded") == 2, result.output
    assert real_runs() == []  # dry runs are records only: the slots are still free


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "2025-04-05", "--to", "2025-04-01"], "is after --to"),
    (["--from", "last week", "--to", "2025-04-01"], "--from: 'last week' is not an ISO-8601"),
    (["--from", "2025-04-01", "--to", "2999-01-01"], "is in the future"),
    (["--from", "2024-01-01", "--to", "2025-01-01"], "the range holds 367 slots"),
    (["--from", "2025-04-01"], "needs --from and --to"),
])
def test_backfill_bad_ranges_get_one_error_line(runner, args, says):
    assert says in only_error_line(runner.invoke(jobs_group, ["backfill", JOB, *args]))
    assert real_runs() == []


def test_backfill_errors_through_a_real_process():
    """The installed command, as an operator runs it: one Error line on stderr, exit non-zero."""
    for args in (["backfill", "nope", "--from", "2025-01-01", "--to", "2025-01-02"],
                 ["backfill", JOB, "--from", "2025-01-02", "--to", "2025-01-01"]):
        proc = subprocess.run([sys.executable, "-m", "saas", "jobs", *args], capture_output=True, text=True,
                              env=os.environ.copy(), timeout=120)
        assert proc.returncode != 0 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr


def test_backfill_racing_beat_runs_each_slot_once(settings, with_settings, redis_client, monkeypatch):
    """Beat (sending to a worker that runs at once) and a backfill over the same missed slots, in two
    threads: the ledger's claim lets exactly one of them run each slot."""
    job = "remind-inactive-users"
    settings = with_settings(schedules={**settings.schedules, job: "0 */6 * * *"})
    run_job(job, settings, utc(2025, 5, 1), now=utc(2025, 5, 1))  # it ran before beat went down
    calls: list[datetime] = []
    lock = threading.Lock()
    real = JOBS[job]

    def counted(session, ctx):
        with lock:
            calls.append(ctx.slot)
        return real(session, ctx)

    monkeypatch.setitem(JOBS, job, counted)
    now = utc(2025, 5, 2, 6, 30)  # five missed six-hourly slots, all within the catch-up window
    missed = [utc(2025, 5, 1, 6), utc(2025, 5, 1, 12), utc(2025, 5, 1, 18), utc(2025, 5, 2, 0), utc(2025, 5, 2, 6)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            start.wait()
            with session_scope() as s:
                dispatch_due(now, redis_client, s, settings,
                             send=lambda j, slot: run_job(j, settings, datetime.fromisoformat(slot)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def fill() -> None:
        try:
            start.wait()
            backfill.run_backfill(job, settings, list(reversed(missed)))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=beat), threading.Thread(target=fill)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(calls) == missed  # each slot's job body ran exactly once
    assert real_runs(job) == [(utc(2025, 5, 1), "succeeded", 1)] + [(s, "succeeded", 1) for s in missed]


def test_a_skipped_slot_run_later_measures_its_own_run(settings):
    with session_scope() as s:
        ledger.record_skipped(s, JOB, [utc(2025, 6, 1)], utc(2025, 6, 1, 0, 0, 5), "missed")
        s.commit()
    later = utc(2025, 6, 2, 9)
    run = run_job(JOB, settings, utc(2025, 6, 1), now=later, explicit=True)
    assert run is not None and run.status == "succeeded"
    assert run.started_at == later and run.finished_at - run.started_at < timedelta(hours=1)


def test_resume_with_backfill_runs_the_paused_slots_oldest_first(runner, settings, redis_client):
    run_job(JOB, settings, utc(2025, 3, 1), now=utc(2025, 3, 1))
    runner.invoke(jobs_group, ["pause", JOB, "--reason", "migration"])
    for day in (2, 3):
        tick(utc(2025, 3, day, 0, 1), redis_client, settings)
    result = runner.invoke(jobs_group, ["resume", JOB, "--backfill"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if ": succeeded" in line]
    assert [line.split()[0] for line in lines] == [utc(2025, 3, 2).isoformat(), utc(2025, 3, 3).isoformat()]
    assert real_runs() == [(utc(2025, 3, d), "succeeded", 1) for d in (1, 2, 3)]
