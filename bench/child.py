"""`python -m bench.child JOB`: run one nightly job in a fresh process, print seconds and peak RSS.

A child per run, so its peak resident memory (VmHWM) is the job's own plus the interpreter and
imports, which are reported separately as the baseline.
"""
from __future__ import annotations

import json
import sys
import time


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process; VmHWM is reset by exec, unlike ru_maxrss (which Linux carries
    over from the forking parent, the seeding process here)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(name: str) -> None:
    from scheduled.runner import run_job

    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    run = run_job(name)
    elapsed = time.perf_counter() - start
    if run is None or run.status != "succeeded":
        raise SystemExit(f"{name}: run {'not claimed' if run is None else run.status}: {getattr(run, 'error', '')}")
    peak = _status_mb("VmHWM")
    print(json.dumps({"seconds": elapsed, "peak_mb": peak, "baseline_mb": baseline,
                      "scanned": run.scanned, "changed": run.changed, "emails": run.emails_queued}))


if __name__ == "__main__":
    main(sys.argv[1])
