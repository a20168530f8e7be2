"""On-demand finance reports: revenue and churn over a date range, built with live progress."""
from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime

from sqlalchemy import update

from billing.finance import FinanceReport, revenue_churn_csv
from saas.core import redis_client, runtime
from saas.core.db import session_scope
from saas.core.queue import app

log = logging.getLogger(__name__)
PROGRESS_TTL = 24 * 3600


def channel(report_id: int) -> str:
    """The Redis pub/sub channel that carries a report's progress."""
    return f"saas:finance-report:{report_id}"


def progress_key(report_id: int) -> str:
    """The Redis key holding a report's latest progress message (for late subscribers)."""
    return f"saas:finance-report:{report_id}:progress"


def publish(report_id: int, status: str, progress: int) -> None:
    """Tell whoever watches: stored under a key and broadcast. Progress is best effort."""
    message = json.dumps({"id": report_id, "status": status, "progress": progress})
    try:
        client = redis_client.get()
        client.set(progress_key(report_id), message, ex=PROGRESS_TTL)
        client.publish(channel(report_id), message)
    except Exception:  # the row stays the source of truth; the page falls back to it
        log.warning("could not publish progress of finance report %s", report_id, exc_info=True)


def _set(report_id: int, **values) -> None:
    with session_scope() as session:
        session.execute(update(FinanceReport).where(FinanceReport.id == report_id).values(**values))


@app.task(name="scheduled.reports.build_finance_report")
def build_finance_report(report_id: int) -> str:
    """Build one report, storing and publishing its progress; a redelivered task starts over."""
    with session_scope() as session:
        report = session.get(FinanceReport, report_id)
        if report is None or report.status == "done":
            return "nothing to do"
        start, end = date.fromisoformat(report.params["start"]), date.fromisoformat(report.params["end"])
    _set(report_id, status="running", progress=0, error=None)
    publish(report_id, "running", 0)

    def on_progress(pct: int) -> None:
        _set(report_id, progress=pct)
        publish(report_id, "running", pct)

    try:
        with session_scope() as session:
            content = revenue_churn_csv(session, start, end, runtime.settings().tz, on_progress)
    except Exception as exc:
        log.exception("finance report %s failed", report_id)
        _set(report_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
             finished_at=datetime.now(UTC))
        publish(report_id, "failed", 0)
        raise
    _set(report_id, status="done", progress=100, csv=content, finished_at=datetime.now(UTC))
    publish(report_id, "done", 100)
    return "done"
