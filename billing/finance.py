"""Finance: the summary's figures and the revenue-and-churn report, and the rows that keep them.

The finance-summary job (scheduled.jobs.finance_summary) and the report task
(scheduled.reports) run these; the finance pages read the rows. Money is in cents; a
subscription's MRR is billing.plans.monthly_cents (SQL twin: monthly_cents_sql).
"""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Session, mapped_column

from billing.expiry import expiring_clause
from billing.models import DUNNING_CAUSES, Card, DunningCase, Invoice, MrrMovement, Subscription
from billing.plans import monthly_cents_sql
from saas.core.db import Base, utcnow
from saas.core.models import User

KIND = "finance-summary"
EXPIRING_WITHIN_DAYS = 30
PAYING = ("active", "past_due")
MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")


def periods_for(today: date) -> list[tuple[str, date, date]]:
    """(period, first day, last day): yesterday always; the past month too on the 1st."""
    yesterday = today - timedelta(days=1)
    found = [("daily", yesterday, yesterday)]
    if today.day == 1:
        found.append(("monthly", yesterday.replace(day=1), yesterday))
    return found


def _monthly_mrr():
    """A subscription's MRR in SQL (billing.plans.monthly_cents_sql: the one definition)."""
    return monthly_cents_sql(Subscription.amount_cents, Subscription.interval)


def _cents(value: Any) -> int:
    return int(round(value or 0))


def period_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants [start, end) of the local days first..last (inclusive)."""
    return datetime.combine(first, time(0), tz), datetime.combine(last + timedelta(days=1), time(0), tz)


def figures(session: Session, first: date, last: date, today: date, tz: ZoneInfo) -> dict[str, Any]:
    """Every figure of the summary for the local days first..last (inclusive).

    Flows (movements, payments, reminders, purges) count inside the period; stocks (MRR,
    active subscriptions, expiring cards) are as of the run. Purges pending are the purge's own
    rule (scheduled.dormancy.pending_purges): the finance-summary job adds them.
    """
    start, end = period_bounds(first, last, tz)
    params = {"start": start, "end": end}
    per_currency: dict[str, dict[str, int]] = {}

    def put(currency: str, name: str, value: Any) -> None:
        per_currency.setdefault(currency, {})[name] = _cents(value)

    for cur, mrr in session.execute(
        select(Subscription.currency, func.sum(_monthly_mrr()))
        .where(Subscription.status.in_(PAYING)).group_by(Subscription.currency)
    ):
        put(cur, "mrr_cents", mrr)
    for cur, kind, delta in session.execute(text(
        "SELECT currency, kind, sum(mrr_after_cents - mrr_before_cents) FROM mrr_movements "
        "WHERE at >= :start AND at < :end GROUP BY currency, kind"), params):
        put(cur, f"{kind}_mrr_cents", abs(delta))
    for cur, failed, failed_cents in session.execute(text(
        "SELECT currency, count(*), sum(amount_cents) FROM invoices "
        "WHERE first_failed_at >= :start AND first_failed_at < :end GROUP BY currency"), params):
        put(cur, "failed_payments", failed)
        put(cur, "failed_amount_cents", failed_cents)
    for cur, recovered, recovered_cents in session.execute(text(
        "SELECT currency, count(*), sum(amount_cents) FROM invoices WHERE paid_at >= :start AND paid_at < :end "
        "AND status = 'paid' AND first_failed_at IS NOT NULL AND first_failed_at < paid_at GROUP BY currency"), params):
        put(cur, "recovered_payments", recovered)
        put(cur, "recovered_amount_cents", recovered_cents)

    expiring = (Card.is_default, Card.expires_on >= today, expiring_clause(today, EXPIRING_WITHIN_DAYS))
    # The owner's purge is checked per card (a correlated subquery, one primary-key lookup each):
    # a join would have PostgreSQL scan every user for the few owners of this month's cards.
    owner_purged = select(User.purged_at).where(User.id == Card.user_id).scalar_subquery()
    expiring_owners = select(Card.user_id).where(*expiring, owner_purged.is_(None))
    for cur, at_risk in session.execute(
        select(Subscription.currency, func.sum(_monthly_mrr()))
        .where(Subscription.status.in_(PAYING), Subscription.user_id.in_(expiring_owners))
        .group_by(Subscription.currency)
    ):
        put(cur, "expiring_cards_mrr_cents", at_risk)

    counts = session.execute(text(
        "SELECT stock.paying, stock.trialing,"
        " (SELECT count(*) FROM subscriptions WHERE created_at >= :start AND created_at < :end),"
        " (SELECT count(*) FROM subscriptions WHERE canceled_at >= :start AND canceled_at < :end),"
        " (SELECT count(*) FROM outbox WHERE kind = 'inactive-warning' AND created_at >= :start AND created_at < :end),"
        " (SELECT count(*) FROM audit_log WHERE action = 'account.purged' AND at >= :start AND at < :end)"
        " FROM (SELECT count(*) FILTER (WHERE status IN ('active', 'past_due')) AS paying,"
        "              count(*) FILTER (WHERE status = 'trialing') AS trialing FROM subscriptions) AS stock"),
        params).one()
    expiring_cards = session.scalar(select(func.count()).select_from(expiring_owners.subquery()))
    for figures_of_currency in per_currency.values():
        for name in ("mrr_cents", *(f"{k}_mrr_cents" for k in MOVEMENTS), "failed_payments",
                     "failed_amount_cents", "recovered_payments", "recovered_amount_cents",
                     "expiring_cards_mrr_cents"):
            figures_of_currency.setdefault(name, 0)
    return {
        "period_start": first.isoformat(), "period_end": last.isoformat(),
        "currencies": dict(sorted(per_currency.items())),
        "dunning": dunning_funnel(session, start, end),
        "active_subscriptions": counts[0], "trialing_subscriptions": counts[1],
        "new_subscriptions": counts[2], "cancelled_subscriptions": counts[3],
        "expiring_cards": expiring_cards, "reminders_sent": counts[4],
        "accounts_purged": counts[5],
    }


def dunning_funnel(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Dunning in [start, end): cases opened; cases that ended, by outcome: recovered (by cause and by
    the step they had reached), lost (the final action), written off; the MRR recovered (the
    subscriptions' MRR when their case opened) and the recovery rate, recovered / ended (cases closed
    because the invoice or subscription ended elsewhere are not counted as either). Set-based: two queries."""
    opened = session.scalar(select(func.count()).where(DunningCase.opened_at >= start, DunningCase.opened_at < end))
    ended = session.execute(
        select(DunningCase.status, DunningCase.cause, DunningCase.step, func.count(), func.sum(DunningCase.mrr_cents))
        .where(DunningCase.closed_at >= start, DunningCase.closed_at < end,
               DunningCase.status.in_(("recovered", "lost", "written_off")))
        .group_by(DunningCase.status, DunningCase.cause, DunningCase.step)).all()
    by_cause = dict.fromkeys(DUNNING_CAUSES, 0)
    by_step: dict[str, int] = {}
    totals = {"recovered": 0, "lost": 0, "written_off": 0}
    recovered_mrr = 0
    for status, cause, step, count, mrr in ended:
        totals[status] += count
        if status == "recovered":
            by_cause[cause or "automatic_retry"] += count
            by_step[str(step)] = by_step.get(str(step), 0) + count
            recovered_mrr += int(mrr or 0)
    closed = sum(totals.values())
    return {"opened": opened or 0, **totals, "recovered_by_cause": by_cause,
            "recovered_by_step": dict(sorted(by_step.items(), key=lambda kv: int(kv[0]))),
            "recovered_mrr_cents": recovered_mrr,
            "recovery_rate": round(totals["recovered"] / closed, 4) if closed else None}


def to_csv(period: str, data: dict[str, Any]) -> str:
    """One line per figure: period, metric, currency (blank for counts), value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "period_start", "period_end", "metric", "currency", "value"])
    head = [period, data["period_start"], data["period_end"]]
    for currency, values in data["currencies"].items():
        for name, value in values.items():
            writer.writerow([*head, name, currency, value])
    for name in ("active_subscriptions", "trialing_subscriptions", "new_subscriptions",
                 "cancelled_subscriptions", "expiring_cards", "reminders_sent", "accounts_purged",
                 "purges_pending"):
        writer.writerow([*head, name, "", data.get(name, "")])
    for name, value in (data.get("reconciliation") or {}).items():  # reconcile-stripe's runs of the period
        writer.writerow([*head, f"reconcile_{name}", "", value])
    funnel = data.get("dunning") or {}
    for name in ("opened", "recovered", "lost", "written_off", "recovered_mrr_cents", "recovery_rate"):
        if name in funnel:
            writer.writerow([*head, f"dunning_{name}", "", "" if funnel[name] is None else funnel[name]])
    for cause, count in (funnel.get("recovered_by_cause") or {}).items():
        writer.writerow([*head, f"dunning_recovered_by_{cause}", "", count])
    for step, count in (funnel.get("recovered_by_step") or {}).items():
        writer.writerow([*head, f"dunning_recovered_at_step_{step}", "", count])
    return out.getvalue()


CHUNK_DAYS = 7
# Amounts in cents, as their column names say (the pages and emails show money).
COLUMNS = ("date", "currency", "revenue_cents", "invoices_paid", "new_mrr_cents", "churned_mrr_cents",
           "new_subscriptions", "churned_subscriptions")


def _local_day(column, tz: ZoneInfo):
    return cast(func.timezone(tz.key, column), Date)


def _window(start: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(start, time(0), tzinfo=tz)


def figures_between(session: Session, start: date, end: date, tz: ZoneInfo) -> dict[tuple[date, str], dict[str, int]]:
    """Per local day (in `tz`) and currency, in [start, end): paid revenue and MRR movements. Set-based."""
    rows: dict[tuple[date, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS[2:], 0))
    lo, hi = _window(start, tz), _window(end, tz)
    paid_day = _local_day(Invoice.paid_at, tz)
    for day, currency, revenue, count in session.execute(
        select(paid_day, Invoice.currency, func.sum(Invoice.amount_cents), func.count())
        .where(Invoice.status == "paid", Invoice.paid_at >= lo, Invoice.paid_at < hi)
        .group_by(paid_day, Invoice.currency)
    ):
        rows[(day, currency)].update(revenue_cents=int(revenue), invoices_paid=count)
    moved_day = _local_day(MrrMovement.at, tz)
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
        rows[(day, currency)].update(new_mrr_cents=int(new_mrr), churned_mrr_cents=int(churned_mrr),
                                     new_subscriptions=new_subs, churned_subscriptions=churned_subs)
    return rows


def revenue_churn_csv(session: Session, start: date, end: date, tz: ZoneInfo,
                      on_progress: Callable[[int], None] = lambda _pct: None) -> str:
    """The report for the days start..end inclusive, one row per day (and currency), in cents."""
    total_days = (end - start).days + 1
    found: dict[tuple[date, str], dict[str, int]] = {}
    day = start
    while day <= end:
        chunk_end = min(day + timedelta(days=CHUNK_DAYS), end + timedelta(days=1))
        found.update(figures_between(session, day, chunk_end, tz))
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


class FinanceSummary(Base):
    """The figures of one finance-summary period, as emailed."""

    __tablename__ = "finance_summaries"
    __table_args__ = (UniqueConstraint("period", "period_start"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    period: Mapped[str] = mapped_column(String(10))  # daily | monthly
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB)
    csv: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FinanceReport(Base):
    """An on-demand report built by a Celery task that reports progress."""

    __tablename__ = "finance_reports"
    __table_args__ = (CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(50), default="revenue-churn")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="queued")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    csv: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
