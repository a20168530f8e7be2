"""MRR over time and its movements, month by month, in APP_TIMEZONE: what the /finance charts show.

MRR at a month's end is today's MRR less the net movements recorded since that month ended, so
the curve ends exactly on the summary's MRR. Movements are mrr_movements summed per local month
and kind (signed: contraction and churn are negative).

Recovered MRR (the subscriptions' MRR whose failed renewal dunning won back, by the month the case
closed) stands beside the movements, not among them: a past-due subscription's MRR never left the
total, so winning it back moves nothing; it is the churn that did not happen.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from billing.models import DunningCase, MrrMovement, Subscription
from billing.plans import monthly_cents_sql

PAYING = ("active", "past_due")
# Gains first, then losses: the order of the chart's stacks and the table's columns.
MOVEMENT_KINDS = ("new", "expansion", "reactivation", "contraction", "churn")


@dataclass
class Month:
    start: date
    mrr_cents: int = 0  # at the month's end (today, for the current month)
    movements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MOVEMENT_KINDS, 0))
    recovered_cents: int = 0  # won back by dunning in the month (not a movement: see the module's docstring)

    @property
    def net_cents(self) -> int:
        return sum(self.movements.values())


def month_starts(today: date, months: int) -> list[date]:
    """The first days of the `months` months up to today's, oldest first."""
    index = today.year * 12 + today.month - 1
    return [date((i // 12), i % 12 + 1, 1) for i in range(index - months + 1, index + 1)]


def current_mrr(session: Session) -> dict[str, int]:
    """Today's MRR per currency, in cents (the summary's definition)."""
    mrr = monthly_cents_sql(Subscription.amount_cents, Subscription.interval)
    return {cur: int(total or 0) for cur, total in session.execute(
        select(Subscription.currency, func.sum(mrr)).where(Subscription.status.in_(PAYING))
        .group_by(Subscription.currency))}


def mrr_history(session: Session, today: date, tz: ZoneInfo, months: int = 12) -> dict[str, list[Month]]:
    """Per currency, one Month per month of the last `months` (oldest first). One query for the movements."""
    starts = month_starts(today, months)
    since = datetime.combine(starts[0], time(0), tz)
    local_month = cast(func.date_trunc("month", func.timezone(tz.key, MrrMovement.at)), Date)
    history: dict[str, dict[date, Month]] = {}
    now_mrr = current_mrr(session)

    def of(currency: str) -> dict[date, Month]:
        return history.setdefault(currency, {start: Month(start) for start in starts})

    for cur in now_mrr:
        of(cur)
    for month, cur, kind, delta in session.execute(
        select(local_month, MrrMovement.currency, MrrMovement.kind,
               func.sum(MrrMovement.mrr_after_cents - MrrMovement.mrr_before_cents))
        .where(MrrMovement.at >= since).group_by(local_month, MrrMovement.currency, MrrMovement.kind)
    ):
        if month in of(cur):
            of(cur)[month].movements[kind] = int(delta)
    closed_month = cast(func.date_trunc("month", func.timezone(tz.key, DunningCase.closed_at)), Date)
    for month, cur, recovered in session.execute(
        select(closed_month, DunningCase.currency, func.sum(DunningCase.mrr_cents))
        .where(DunningCase.status == "recovered", DunningCase.closed_at >= since)
        .group_by(closed_month, DunningCase.currency)
    ):
        if month in of(cur):
            of(cur)[month].recovered_cents = int(recovered or 0)
    result: dict[str, list[Month]] = {}
    for cur, by_month in sorted(history.items()):
        ordered = [by_month[s] for s in starts]
        running = now_mrr.get(cur, 0)
        for entry in reversed(ordered):  # back from today: a month ends where the next one's moves begin
            entry.mrr_cents = running
            running -= entry.net_cents
        result[cur] = ordered
    return result
