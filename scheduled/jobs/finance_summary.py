"""finance-summary: the figures of a day (and, on the 1st, of the past month), emailed once with a CSV."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Numeric, case, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.expiry import expiring_clause
from billing.models import Card, Subscription
from saas.models import User
from saas.outbox import queue_email
from scheduled.ledger import RunContext
from scheduled.models import FinanceSummary

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
    """A subscription's amount normalised to a month (yearly plans count a twelfth)."""
    return case((Subscription.interval == "year", Subscription.amount_cents.cast(Numeric) / 12),
                else_=Subscription.amount_cents.cast(Numeric))


def _cents(value: Any) -> int:
    return int(round(value or 0))


def figures(session: Session, first: date, last: date, today: date, tz: ZoneInfo) -> dict[str, Any]:
    """Every figure of the summary for the local days first..last (inclusive).

    Flows (movements, payments, reminders, purges) count inside the period; stocks (MRR,
    active subscriptions, expiring cards, pending purges) are as of the run.
    """
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tz)
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
        "AND first_failed_at IS NOT NULL AND first_failed_at < paid_at GROUP BY currency"), params):
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
        " (SELECT count(*) FROM audit_log WHERE action = 'account.purged' AND at >= :start AND at < :end),"
        " (SELECT count(*) FROM users WHERE purge_due_at IS NOT NULL AND purged_at IS NULL)"
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
        "active_subscriptions": counts[0], "trialing_subscriptions": counts[1],
        "new_subscriptions": counts[2], "cancelled_subscriptions": counts[3],
        "expiring_cards": expiring_cards, "reminders_sent": counts[4],
        "accounts_purged": counts[5], "purges_pending": counts[6],
    }


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
        writer.writerow([*head, name, "", data[name]])
    return out.getvalue()


def finance_summary(session: Session, ctx: RunContext) -> None:
    """One email and one FinanceSummary row per period; each period is one committed batch."""
    settings = ctx.settings
    done = list(ctx.cursor("periods", []))
    for period, first, last in periods_for(ctx.today):
        key = f"{KIND}:{period}:{first.isoformat()}"
        if key in done:
            continue
        data = figures(session, first, last, ctx.today, ctx.tz)
        content = to_csv(period, data)
        session.execute(insert(FinanceSummary).values(
            period=period, period_start=first, period_end=last, figures=data, csv=content,
        ).on_conflict_do_nothing(index_elements=["period", "period_start"]))
        queued = queue_email(
            session, key=key, kind=KIND, to=", ".join(settings.finance_emails), template="finance_summary",
            context={"period": period, "figures": data},
            attachments=[{"filename": f"finance-summary-{period}-{first.isoformat()}.csv",
                          "content_type": "text/csv", "content": content}],
        )
        if ctx.dry_run:
            ctx.details.setdefault("figures", {})[period] = data
        ctx.batch_done(session, name="periods", cursor=[*done, key], scanned=1, changed=1, emails=int(queued))
        done.append(key)
