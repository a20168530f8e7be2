"""Metrics read from the database at scrape time: what the ledger and the outbox hold now.

Counters live in the processes that count (saas.core.metrics); these gauges are the state every
process shares, so they are right whichever worker ran the job, across restarts, and for runs
started from the command line. Three small grouped queries, bounded by a statement timeout; a
slow or unreachable database costs the scrape these gauges (saas_state_metrics_up 0), not a 500.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

from saas.core.db import get_engine
from saas.core.outbox.models import OutboxMessage
from scheduled.jobs import JOBS
from scheduled.models import JobRun

log = logging.getLogger(__name__)
STATEMENT_TIMEOUT_MS = 2000
OUTBOX_STATUSES = ("pending", "sending", "failed")  # sent rows only grow: count them with the delivery counter


class StateCollector:
    """A prometheus-client collector: gauges from the job ledger and the outbox."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("saas_state_metrics_up", "1 when the database gauges below could be read.")
        try:
            families = list(self._read())
        except SQLAlchemyError as exc:
            log.warning("metrics: database gauges unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        with get_engine().connect() as conn:
            conn.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            last_success = dict(conn.execute(
                select(JobRun.job, func.max(JobRun.finished_at))
                .where(JobRun.status == "succeeded", JobRun.dry_run.is_(False)).group_by(JobRun.job)).all())
            skipped = dict(conn.execute(
                select(JobRun.job, func.count())
                .where(JobRun.status == "skipped", JobRun.dry_run.is_(False)).group_by(JobRun.job)).all())
            outbox = dict(conn.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.status.in_(OUTBOX_STATUSES)).group_by(OutboxMessage.status)).all())
            oldest = conn.execute(
                select(func.min(OutboxMessage.created_at))
                .where(OutboxMessage.status.in_(("pending", "sending")))).scalar_one()
            conn.rollback()

        success = GaugeMetricFamily("saas_job_last_success_timestamp_seconds",
                                    "When each job's newest successful run finished (Unix time); absent before the first.",
                                    labels=["job"])
        for job, finished in sorted(last_success.items()):
            if finished is not None:
                success.add_metric([job], finished.timestamp())
        yield success
        skipped_family = GaugeMetricFamily("saas_job_skipped_slots",
                                           "Slots recorded as skipped in the ledger (missed past the catch-up window).",
                                           labels=["job"])
        for job in JOBS:
            skipped_family.add_metric([job], skipped.get(job, 0))
        yield skipped_family
        messages = GaugeMetricFamily("saas_outbox_messages", "Outbox rows by status (sent rows are not counted here).",
                                     labels=["status"])
        for status in OUTBOX_STATUSES:
            messages.add_metric([status], outbox.get(status, 0))
        yield messages
        yield GaugeMetricFamily("saas_outbox_oldest_pending_age_seconds",
                                "Age of the oldest outbox row not yet sent (pending or sending); 0 when none.",
                                value=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
