"""On-demand finance reports: revenue and churn over a date range, built with live progress."""
from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from celery import shared_task
from sqlalchemy import Date, case, cast, func, select, update
from sqlalchemy.orm import Session

from saas.db import session_scope
from saas.settings import get_settings
from scheduled.models import FinanceReport

log = logging.getLogger(__name__)
CHUNK_DAYS = 7
COLUMNS = ("date", "currency", "revenue", "invoices_paid", "new_mrr", "churned_mrr",
           "new_subscriptions", "churned_subscriptions")
PROGRESS_TTL = 24 * 3600


def channel(report_id: int) -> str:
    """The Redis pub/sub channel that carries a report's progress."""
    return f"saas:finance-report:{report_id}"


def progress_key(report_id: int) -> str:
    """The Redis key holding a report's latest progress message (for late subscribers)."""
    return f"saas:finance-report:{report_id}:progress"


def _redis():
    import redis

    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=5, socket_connect_timeout=5)


def publish(report_id: int, status: str, progress: int) -> None:
    """Tell whoever watches: stored under a key and broadcast. Progress is best effort."""
    message = json.dumps({"id": report_id, "status": status, "progress": progress})
    try:
        client = _redis()
        client.set(progress_key(report_id), message, ex=PROGRESS_TTL)
        client.publish(channel(report_id), message)
    except Exception:  # the row stays the source of truth; the page falls back to it
        log.warning("could not publish progress of finance report %s", report_id, exc_info=True)


def _local_day(column):
    return cast(func.timezone(get_settings().app_timezone, column), Date)


def _window(start: date) -> datetime:
    from datetime import time

    return datetime.combine(start, time(0), tzinfo=get_settings().tz)


def figures_between(session: Session, start: date, end: date) -> dict[tuple[date, str], dict[str, int]]:
    """Per local day and currency, in [start, end): paid revenue and MRR movements. Set-based."""
    from billing.models import Invoice, MrrMovement

    rows: dict[tuple[date, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS[2:], 0))
    lo, hi = _window(start), _window(end)
    paid_day = _local_day(Invoice.paid_at)
    for day, currency, revenue, count in session.execute(
        select(paid_day, Invoice.currency, func.sum(Invoice.amount_cents), func.count())
        .where(Invoice.status == "paid", Invoice.paid_at >= lo, Invoice.paid_at < hi)
        .group_by(paid_day, Invoice.currency)
    ):
        rows[(day, currency)].update(revenue=int(revenue), invoices_paid=count)
    moved_day = _local_day(MrrMovement.at)
    delta = MrrMovement.mrr_after_cents - MrrMovement.mrr_before_cents
    gained = MrrMovement.kind.in_(("new", "reactivation"))
    churned = MrrMovement.kind == "churn"
    for day, currency, new_mrr, churned_mrr, new_subs, churned_subs in session.execute(
        select(moved_day, MrrMovement.currency,
               func.sum(case((gained, delta), else_=0)), func.sum(case((churned, -delta), else_=0)),
               func.count().filter(gained), func.count().filter(churned))
        .where(MrrMovement.at >= lo, MrrMovement.at < hi)
        .group_by(moved_day, MrrMovement.currency)
    ):
        rows[(day, currency)].update(new_mrr=int(new_mrr), churned_mrr=int(churned_mrr),
                                     new_subscriptions=new_subs, churned_subscriptions=churned_subs)
    return rows


def revenue_churn_csv(session: Session, start: date, end: date,
                      on_progress: Callable[[int], None] = lambda _pct: None) -> str:
    """The report for the days start..end inclusive, one row per day (and currency), in cents."""
    total_days = (end - start).days + 1
    found: dict[tuple[date, str], dict[str, int]] = {}
    day = start
    while day <= end:
        chunk_end = min(day + timedelta(days=CHUNK_DAYS), end + timedelta(days=1))
        found.update(figures_between(session, day, chunk_end))
        day = chunk_end
        on_progress(min(99, (day - start).days * 100 // total_days))
    currencies = sorted({currency for _day, currency in found}) or ["usd"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for offset in range(total_days):
        current = start + timedelta(days=offset)
        for currency in currencies:
            figures = found.get((current, currency), dict.fromkeys(COLUMNS[2:], 0))
            writer.writerow([current.isoformat(), currency.upper(), *(figures[c] for c in COLUMNS[2:])])
    return out.getvalue()


def _set(report_id: int, **values) -> None:
    with session_scope() as session:
        session.execute(update(FinanceReport).where(FinanceReport.id == report_id).values(**values))


@shared_task(name="scheduled.reports.build_finance_report")
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
            content = revenue_churn_csv(session, start, end, on_progress)
    except Exception as exc:
        log.exception("finance report %s failed", report_id)
        _set(report_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
             finished_at=datetime.now(timezone.utc))
        publish(report_id, "failed", 0)
        raise
    _set(report_id, status="done", progress=100, csv=content, finished_at=datetime.now(timezone.utc))
    publish(report_id, "done", 100)
    return "done"
