"""Part: a large outbox backlog delivered by 1, 2 and 4 real Celery worker processes.

The sink takes 20 ms per message (a mail provider's round trip), so one worker is bound by the
wait and more workers should share the backlog: each `deliver_outbox` claims its own batch
(FOR UPDATE SKIP LOCKED) and a full batch enqueues the next before it sends. Every run counts the
distinct Message-IDs the sink received, which must be exactly the rows queued.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path

from sqlalchemy import text

from bench.email import _fill_outbox
from bench.report import Report, ratio
from bench.sink import start_sink
from saas.core import runtime
from saas.core.db import get_engine, session_scope
from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import app, enqueue
from saas.dev.embedded import die_with_parent, free_port
from scheduled import pauses

WORKERS = (1, 2, 4)
SINK_DELAY = 0.02  # seconds per message
ROOT = Path(__file__).resolve().parents[1]


def start_workers(count: int, env: dict[str, str], logdir: Path) -> list[subprocess.Popen]:
    """`count` `celery -A scheduled worker --concurrency 1` processes (no beat: only the bench enqueues);
    returns once every one answers a ping."""
    procs = []
    for i in range(count):
        log = open(logdir / f"worker{i}.log", "ab")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "scheduled", "worker", "--concurrency", "1",
             "--hostname", f"bench{i}@%h", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent))
    deadline = time.monotonic() + 60
    while len(app.control.ping(timeout=0.5) or []) < count:
        dead = [p for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            stop_workers(procs)
            raise RuntimeError(f"{count} bench workers did not all start (logs in {logdir})")
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _counts() -> tuple[int, int]:
    with get_engine().connect() as conn:
        row = conn.execute(text("SELECT count(*) FILTER (WHERE status = 'sent'), "
                                "count(*) FILTER (WHERE status = 'failed') FROM outbox")).one()
    return row[0], row[1]


def distinct_message_ids(maildir: Path, messages: int) -> tuple[int, int, list[str]]:
    """(messages stored, distinct Message-IDs among them, a few of the stored messages that are not
    one of the `messages` queued rows') in a Maildir."""
    parser = BytesHeaderParser()
    ids, strangers = [], []
    for path in (maildir / "new").iterdir():
        with open(path, "rb") as fh:
            headers = parser.parse(fh)
        ids.append(headers["Message-ID"])
        row = str(headers["Message-ID"]).removeprefix("<outbox-").split("@")[0]
        if not (row.isdigit() and 1 <= int(row) <= messages) and len(strangers) < 5:
            strangers.append(f"{headers['Message-ID']} to {headers['To']}: {headers['Subject']}")
    return len(ids), len(set(ids)), strangers


def run_delivery(harness, workers: int, messages: int, run: int) -> tuple[float, int, int, list[str]]:
    """Deliver `messages` queued rows with `workers` worker processes; returns (seconds, received,
    distinct Message-IDs, a few messages that were not the queued rows')."""
    workdir = harness.workdir / f"delivery-{workers}-{run}"
    workdir.mkdir()
    port = free_port()
    sink = start_sink(port, workdir / "mail", SINK_DELAY)
    env = {**os.environ, "SMTP_URL": f"smtp://127.0.0.1:{port}", "DATABASE_URL": harness.database_url,
           "PYTHONPATH": str(ROOT), "METRICS_PORT": ""}
    harness.clear_redis()
    _fill_outbox(messages)
    procs = start_workers(workers, env, workdir)
    try:
        start = time.perf_counter()
        enqueue(deliver_outbox)  # what queue_email's commit does; every later batch fans out from it
        deadline = start + messages * SINK_DELAY * 2 + 120
        while (counts := _counts())[0] + counts[1] < messages:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{workers} workers delivered {counts[0]} of {messages} in time (logs in {workdir})")
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        if counts[1]:
            raise RuntimeError(f"{counts[1]} outbox rows failed (logs in {workdir})")
    finally:
        stop_workers(procs)
        sink.terminate()
        sink.wait(10)
    return (elapsed, *distinct_message_ids(workdir / "mail", messages))


def pause_every_job() -> None:
    """Each worker's missed-slot watchdog (scheduled.watchdog) would email the admins about the
    nightly slots the bench's database has no run for; those emails are the product doing its job,
    not part of the backlog. Paused jobs are not expected to run, so it stays quiet."""
    with session_scope() as session:
        for job in runtime.settings().schedules:
            pauses.pause(session, job, "delivery benchmark", "bench", datetime.now(UTC))


def bench_delivery(harness, report: Report, repeat: int, messages: int) -> None:
    report.section(f"Delivery scale-out: {messages:,} queued emails, 1/2/4 worker processes, "
                   f"a sink taking {SINK_DELAY * 1000:.0f} ms per message")
    harness.fresh_copy()
    pause_every_job()
    for run in range(repeat):
        for workers in WORKERS:
            elapsed, received, distinct, strangers = run_delivery(harness, workers, messages, run)
            report.add(f"delivery.workers_{workers}", "msg/s", messages / elapsed)
            report.add(f"delivery.workers_{workers}.distinct", "messages", distinct)
            if received != messages or distinct != messages:
                report.note(f"{workers} workers: the sink received {received} messages, {distinct} distinct, "
                            f"of {messages} queued; not queued rows': {strangers}")
    report.show(*(f"delivery.workers_{w}" for w in WORKERS))
    one = report.stats["delivery.workers_1"].median
    report.check("4 workers / 1 worker", ratio(report.stats["delivery.workers_4"].median, one), ">= 3.0",
                 ratio(report.stats["delivery.workers_4"].median, one) >= 3.0)
    exact = all(s == messages for w in WORKERS for s in report.stats[f"delivery.workers_{w}.distinct"].samples)
    report.check("distinct messages received per run", messages if exact else 0, f"== {messages}", exact)
