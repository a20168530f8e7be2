"""Part 1: each nightly job against its bare-SQL floor and the naive ORM loop, on the same data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
from psycopg.rows import dict_row

from bench.floors import job_slot, params, run_floor, slot_day
from bench.naive import SAMPLE, run_naive
from bench.report import Report, ratio
from bench.seed import seed
from saas.core import runtime
from saas.core.db import reset_engines

ORDER = ("flag-expiring-cards", "remind-inactive-users", "purge-dormant-accounts", "finance-summary")
SHORT = {"flag-expiring-cards": "flag", "remind-inactive-users": "remind",
         "purge-dormant-accounts": "purge", "finance-summary": "finance"}
FINGERPRINT = """SELECT
  (SELECT count(*) FROM cards WHERE is_expiring) AS flagged_cards,
  (SELECT count(*) FROM outbox WHERE kind = 'card-expiring') AS card_emails,
  (SELECT count(*) FROM users WHERE inactive_warned_at > now() - interval '1 hour') AS warned_now,
  (SELECT count(*) FROM outbox WHERE kind = 'inactive-warning') AS warning_emails,
  (SELECT count(*) FROM users WHERE purged_at IS NOT NULL) AS purged_users,
  (SELECT count(*) FROM audit_log WHERE action = 'account.purged') AS purge_audits,
  (SELECT count(*) FROM cards) AS cards,
  (SELECT count(*) FROM finance_summaries) AS summaries,
  (SELECT count(*) FROM outbox WHERE kind = 'finance-summary') AS summary_emails"""


def run_in_child(job: str, cold: bool = False) -> dict:
    """The job through scheduled.runner.run_job in a fresh process: seconds, peak RSS, counts.

    Timed like a worker's run (connected, templates loaded) unless `cold`: then the timing also
    holds the process's first database and broker connections and template compilation. The slot
    is the one the bench started in (bench.floors.job_slot), the floor's too."""
    slot = job_slot(job, runtime.settings()).isoformat()
    out = subprocess.run([sys.executable, "-m", "bench.child", job, slot, *(["--cold"] if cold else [])],
                         capture_output=True, text=True,
                         env=os.environ.copy(), timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{job} failed in its child process:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fingerprint(database_url: str) -> dict:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(FINGERPRINT).fetchone()


def bench_jobs(harness, report: Report, repeat: int) -> None:
    report.section("Nightly jobs: the job (child process, via run_job; warm like a worker, and cold) | bare SQL floor | naive ORM loop "
                   f"({SAMPLE:,}-row sample, extrapolated); each variant on a fresh copy of the same data")
    for rep in range(repeat):
        url = harness.fresh_copy()
        harness.clear_redis()
        for job in ORDER:
            result = run_in_child(job)
            report.add(f"jobs.{SHORT[job]}.job", "s", result["seconds"])
            report.add(f"jobs.{SHORT[job]}.peak_rss", "MB", result["peak_mb"])
            report.add(f"jobs.{SHORT[job]}.baseline_rss", "MB", result["baseline_mb"])
            if rep == 0:
                print(f"  {job}: scanned {result['scanned']:,}, changed {result['changed']:,}, "
                      f"emails {result['emails']:,}", flush=True)
        job_print = fingerprint(url)
        harness.fresh_copy()
        harness.clear_redis()
        for job in ORDER:
            report.add(f"jobs.{SHORT[job]}.job_cold", "s", run_in_child(job, cold=True)["seconds"])
        settings = runtime.settings()
        url = harness.fresh_copy()
        for job in ORDER:
            report.add(f"jobs.{SHORT[job]}.floor", "s", run_floor(url, job, params(slot_day(job, settings), settings)))
        floor_print = fingerprint(url)
        if rep == 0:
            diff = {k: (job_print[k], floor_print[k]) for k in job_print if job_print[k] != floor_print[k]}
            if diff:
                report.note(f"job and floor effects differ (job, floor): {diff}")
            else:
                print(f"  same effects for job and floor: {job_print}", flush=True)
        harness.fresh_copy()
        for job in ORDER:
            sample, extrapolated = run_naive(job, slot_day(job, settings), settings)
            report.add(f"jobs.{SHORT[job]}.naive_sample", "s", sample)
            report.add(f"jobs.{SHORT[job]}.naive_extrapolated", "s", extrapolated)
    for job in ORDER:
        s = SHORT[job]
        print(f"  {job}:", flush=True)
        report.show(f"jobs.{s}.job", f"jobs.{s}.job_cold", f"jobs.{s}.floor", f"jobs.{s}.naive_sample", f"jobs.{s}.naive_extrapolated",
                    f"jobs.{s}.peak_rss", f"jobs.{s}.baseline_rss")
        med = lambda key: report.stats[key].median  # noqa: E731
        vs_floor = ratio(med(f"jobs.{s}.job"), med(f"jobs.{s}.floor"))
        report.check(f"{job} / floor", vs_floor, "<= 2", vs_floor <= 2)
        speedup = ratio(med(f"jobs.{s}.naive_extrapolated"), med(f"jobs.{s}.job"))
        report.check(f"naive loop / {job}", speedup, ">= 50", speedup >= 50)
        peak = max(report.stats[f"jobs.{s}.peak_rss"].samples)
        report.check(f"{job} peak RSS (MB)", peak, "< 200", peak < 200)


def bench_first_night(harness, report: Report, users: int, repeat: int) -> None:
    """The night nothing has run before: every expiring card and inactive user is work."""
    report.section("First night (no job ever ran: every expiring default card is flagged and warned, every "
                   "inactive user warned): the job | floor | naive loop, as above")
    counts = seed(harness.create_database("bench_first_night"), users, first_night=True)
    reset_engines()
    print(f"  seeded: {counts['cards_to_flag']:,} cards to flag, {counts['users_to_warn']:,} users to warn", flush=True)
    jobs = ("flag-expiring-cards", "remind-inactive-users")
    for _ in range(repeat):
        harness.fresh_copy("bench_first_night")
        harness.clear_redis()
        for job in jobs:
            report.add(f"first.{SHORT[job]}.job", "s", run_in_child(job)["seconds"])
        settings = runtime.settings()
        url = harness.fresh_copy("bench_first_night")
        for job in jobs:
            report.add(f"first.{SHORT[job]}.floor", "s", run_floor(url, job, params(slot_day(job, settings), settings)))
        harness.fresh_copy("bench_first_night")
        for job in jobs:
            report.add(f"first.{SHORT[job]}.naive_extrapolated", "s",
                       run_naive(job, slot_day(job, settings), settings)[1])
    for job in jobs:
        s = SHORT[job]
        report.show(f"first.{s}.job", f"first.{s}.floor", f"first.{s}.naive_extrapolated")
        med = lambda key: report.stats[key].median  # noqa: E731
        vs_floor = ratio(med(f"first.{s}.job"), med(f"first.{s}.floor"))
        report.check(f"first night {job} / floor", vs_floor, "<= 2", vs_floor <= 2)
        speedup = ratio(med(f"first.{s}.naive_extrapolated"), med(f"first.{s}.job"))
        report.check(f"first night naive loop / {job}", speedup, ">= 50", speedup >= 50)
