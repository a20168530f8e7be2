"""What a job run tells the outside: the heartbeat pings and the job metrics (saas.core.metrics).

The runner calls `run_started` once a run is claimed and `run_finished` once its outcome is
recorded. Dry runs change nothing, so they ping nothing and count in no metric.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from saas.core import metrics
from saas.core.settings import Settings
from scheduled import heartbeat
from scheduled.models import JobRun


@dataclass
class RunStart:
    """A claimed run's counts before this attempt (a takeover resumes with earlier batches counted)."""

    job: str
    dry_run: bool
    scanned: int
    changed: int
    emails_queued: int
    monotonic: float = field(default_factory=time.monotonic)


def run_started(settings: Settings, run: JobRun) -> RunStart:
    """Ping `start` for a real run; remember the counts and the time the attempt began."""
    if not run.dry_run:
        heartbeat.ping(settings, run.job, "start")
    return RunStart(run.job, run.dry_run, run.scanned, run.changed, run.emails_queued)


def run_finished(settings: Settings, start: RunStart, result: JobRun) -> None:
    """Count the attempt (status, duration, this attempt's rows and emails) and ping success or fail."""
    if start.dry_run:
        return
    job = start.job
    metrics.JOB_RUNS.labels(job, result.status).inc()
    metrics.JOB_DURATION.labels(job).observe(time.monotonic() - start.monotonic)
    metrics.JOB_ROWS_SCANNED.labels(job).inc(max(result.scanned - start.scanned, 0))
    metrics.JOB_ROWS_CHANGED.labels(job).inc(max(result.changed - start.changed, 0))
    metrics.JOB_EMAILS_QUEUED.labels(job).inc(max(result.emails_queued - start.emails_queued, 0))
    heartbeat.ping(settings, job, "success" if result.status == "succeeded" else "fail")
