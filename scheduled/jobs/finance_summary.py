"""finance-summary: the figures of a day (and, on the 1st, of the past month), emailed once with a CSV.
The figures are billing.finance's, shown beside the previous period's as billing.finance_table's rows
(the /finance page shows the same rows); purges pending are scheduled.dormancy's count, and
reconcile-stripe's counts of the period's runs are added."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.finance import KIND, FinanceSummary, figures, period_bounds, periods_for, to_csv
from billing.finance_table import summary_rows
from saas.core.outbox import queue_email
from scheduled.dormancy import pending_purges
from scheduled.jobs.reconcile_stripe import reconciliation_figures
from scheduled.ledger import RunContext


def previous_start(period: str, first: date) -> date:
    """The first day of the period before (the day before, or the month before)."""
    if period == "daily":
        return first - timedelta(days=1)
    return (first - timedelta(days=1)).replace(day=1)


def previous_figures(session: Session, period: str, first: date) -> dict[str, Any] | None:
    """The figures the summary of the previous period recorded, if it ran."""
    return session.scalar(select(FinanceSummary.figures).where(
        FinanceSummary.period == period, FinanceSummary.period_start == previous_start(period, first)))


def finance_summary(session: Session, ctx: RunContext) -> None:
    """One email and one FinanceSummary row per period; each period is one committed batch."""
    settings = ctx.settings
    done = list(ctx.cursor("periods", []))
    for period, first, last in periods_for(ctx.today):
        key = f"{KIND}:{period}:{first.isoformat()}"
        if key in done:
            continue
        data = {**figures(session, first, last, ctx.today, ctx.tz), "purges_pending": pending_purges(session)}
        data["reconciliation"] = reconciliation_figures(session, *period_bounds(first, last, ctx.tz))
        content = to_csv(period, data)
        session.execute(insert(FinanceSummary).values(
            period=period, period_start=first, period_end=last, figures=data, csv=content,
        ).on_conflict_do_nothing(index_elements=["period", "period_start"]))
        rows = summary_rows(data, previous_figures(session, period, first))
        queued = queue_email(
            session, key=key, kind=KIND, to=", ".join(settings.finance_emails), template="finance_summary",
            context={"period": period, "figures": data, "rows": rows,
                     "report_url": f"{settings.app_url}/finance"},
            attachments=[{"filename": f"finance-summary-{period}-{first.isoformat()}.csv",
                          "content_type": "text/csv", "content": content}],
        )
        if ctx.dry_run:
            ctx.details.setdefault("figures", {})[period] = data
        ctx.batch_done(session, name="periods", cursor=[*done, key], scanned=1, changed=1, emails=int(queued))
        done.append(key)
