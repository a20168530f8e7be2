"""finance-summary: the figures of a day (and, on the 1st, of the past month), emailed once with a CSV.
The figures are billing.finance's, and reconcile-stripe's counts of the period's runs."""
from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.finance import KIND, FinanceSummary, figures, period_bounds, periods_for, to_csv
from saas.core.outbox import queue_email
from scheduled.jobs.reconcile_stripe import reconciliation_figures
from scheduled.ledger import RunContext


def finance_summary(session: Session, ctx: RunContext) -> None:
    """One email and one FinanceSummary row per period; each period is one committed batch."""
    settings = ctx.settings
    done = list(ctx.cursor("periods", []))
    for period, first, last in periods_for(ctx.today):
        key = f"{KIND}:{period}:{first.isoformat()}"
        if key in done:
            continue
        data = figures(session, first, last, ctx.today, ctx.tz)
        data["reconciliation"] = reconciliation_figures(session, *period_bounds(first, last, ctx.tz))
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
