"""`python -m bench.child JOB SLOT [--cold]`: run one nightly job's slot in a fresh process, print seconds and peak RSS.

A child per run, so its peak resident memory (VmHWM) is the job's own plus the interpreter and
imports, which are reported separately as the baseline.
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from sqlalchemy import text

from saas.core import runtime
from saas.core.db import get_engine
from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import app, enqueue
from saas.core.settings import Settings
from scheduled.runner import run_job


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process; VmHWM is reset by exec, unlike ru_maxrss (which Linux carries
    over from the forking parent, the seeding process here)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def warm_up(name: str, slot: datetime, settings: Settings) -> None:
    """What a Celery worker has when a nightly task arrives: the database pool, the broker
    connection (it has published before), and the job's statements compiled by an earlier
    night. The earlier night is a dry run of the job on the same data (it reads what the job
    reads and rolls its writes back), so PostgreSQL's caches are warm too; the floor gets the
    same treatment (a rolled-back pass before its timed one). `--cold` times a fresh process."""
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
    # A worker has published before (the outbox enqueues a delivery after every commit that
    # queues an email), so the broker's queue is already declared on its connection.
    enqueue(deliver_outbox)
    run_job(name, settings, slot=slot, dry_run=True)


def main(name: str, slot: datetime, cold: bool = False) -> None:
    settings = runtime.configure(Settings.from_env())  # the entry point: the parent's environment
    if not cold:
        warm_up(name, slot, settings)
    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    run = run_job(name, settings, slot=slot)
    elapsed = time.perf_counter() - start
    if run is None or run.status != "succeeded":
        raise SystemExit(f"{name}: run {'not claimed' if run is None else run.status}: {getattr(run, 'error', '')}")
    peak = _status_mb("VmHWM")
    print(json.dumps({"seconds": elapsed, "peak_mb": peak, "baseline_mb": baseline,
                      "scanned": run.scanned, "changed": run.changed, "emails": run.emails_queued}))


if __name__ == "__main__":
    main(sys.argv[1], datetime.fromisoformat(sys.argv[2]), cold="--cold" in sys.argv[3:])
