"""finance-summary: figures against a hand-computed fixture, one email per period with its CSV."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select

from billing import records
from billing.finance import FinanceSummary, figures, figures_between
from billing.models import MrrMovement
from saas.core.db import session_scope
from saas.core.mail import render_email
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage
from scheduled.models import JobRun
from scheduled.runner import run_job
from tests.factories import stripe_invoice
from tests.helpers import utc

OLD = utc(2025, 1, 1)


def test_finance_figures_daily_and_monthly(settings, make_user, subscription, invoice, card, add):
    a = make_user()
    subscription(a.id, amount_cents=2000, created_at=utc(2025, 5, 31, 12))
    subscription(a.id, amount_cents=12000, interval="year", created_at=utc(2025, 5, 10))     # 1000 a month
    subscription(a.id, status="past_due", amount_cents=500, currency="eur", created_at=OLD)
    subscription(a.id, status="trialing", amount_cents=3000, created_at=OLD)               # no MRR yet
    subscription(a.id, status="canceled", amount_cents=999, created_at=OLD, canceled_at=utc(2025, 5, 31, 10))
    for at, kind, cur, before, after in [
        (utc(2025, 5, 31, 12), "new", "usd", 0, 2000), (utc(2025, 5, 15), "expansion", "usd", 1000, 1500),
        (utc(2025, 5, 20), "contraction", "eur", 800, 500), (utc(2025, 5, 31, 10), "churn", "usd", 999, 0),
        (utc(2025, 4, 30, 23), "new", "usd", 0, 7777),  # before both periods
    ]:
        add(MrrMovement, at=at, kind=kind, currency=cur, mrr_before_cents=before, mrr_after_cents=after)
    invoice(a.id, status="open", amount_cents=2000, first_failed_at=utc(2025, 5, 31, 8))
    invoice(a.id, status="paid", amount_cents=1500, first_failed_at=utc(2025, 5, 3), paid_at=utc(2025, 5, 31, 9))
    invoice(a.id, status="paid", amount_cents=900, paid_at=utc(2025, 5, 31, 9))  # never failed: not a recovery
    card(a.id, 6, 2025)  # works to June 30: within 30 days of June 1
    add(OutboxMessage, idempotency_key="inactive-warning:x", kind="inactive-warning", to_addr="x@example.com",
        template="inactive_warning", context={}, created_at=utc(2025, 5, 31, 1), status="sent")
    add(AuditLog, at=utc(2025, 5, 20), actor="job:purge-dormant-accounts", action="account.purged",
        subject_type="user", subject_id="99")
    make_user(purge_due_at=utc(2025, 6, 20), inactive_warned_at=utc(2025, 5, 21))

    slot = utc(2025, 6, 1, 6)
    run = run_job("finance-summary", settings, slot, now=slot)
    assert (run.status, run.emails_queued) == ("succeeded", 2)
    assert run_job("finance-summary", settings, slot, now=slot) is None
    with session_scope() as s:
        rows = {r.period: r for r in s.scalars(select(FinanceSummary))}
        mails = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "finance-summary")
                          .order_by(OutboxMessage.id)).all()
    daily, monthly = rows["daily"].figures, rows["monthly"].figures
    common = {"active_subscriptions": 3, "trialing_subscriptions": 1, "cancelled_subscriptions": 1,
              "expiring_cards": 1, "purges_pending": 1}
    assert daily == {**daily, **common, "new_subscriptions": 1, "reminders_sent": 1, "accounts_purged": 0,
                     "period_start": "2025-05-31", "period_end": "2025-05-31"}
    assert monthly == {**monthly, **common, "new_subscriptions": 2, "reminders_sent": 1, "accounts_purged": 1,
                       "period_start": "2025-05-01", "period_end": "2025-05-31"}
    usd_day, usd_month, eur_month = daily["currencies"]["usd"], monthly["currencies"]["usd"], monthly["currencies"]["eur"]
    assert usd_day == {"mrr_cents": 3000, "new_mrr_cents": 2000, "expansion_mrr_cents": 0, "contraction_mrr_cents": 0,
                       "churn_mrr_cents": 999, "reactivation_mrr_cents": 0, "failed_payments": 1,
                       "failed_amount_cents": 2000, "recovered_payments": 1, "recovered_amount_cents": 1500,
                       "expiring_cards_mrr_cents": 3000}
    assert (usd_month["new_mrr_cents"], usd_month["expansion_mrr_cents"], usd_month["churn_mrr_cents"]) == (2000, 500, 999)
    assert (eur_month["mrr_cents"], eur_month["contraction_mrr_cents"], eur_month["expiring_cards_mrr_cents"]) == (500, 300, 500)
    assert [m.idempotency_key for m in mails] == ["finance-summary:daily:2025-05-31", "finance-summary:monthly:2025-05-01"]
    assert mails[0].to_addr == "finance@example.com"
    attachment = mails[1].attachments[0]
    assert attachment["content_type"] == "text/csv" and attachment["filename"] == "finance-summary-monthly-2025-05-01.csv"
    assert "monthly,2025-05-01,2025-05-31,mrr_cents,usd,3000" in attachment["content"]


def test_ordinary_day_sends_only_the_daily_summary(settings):
    run = run_job("finance-summary", settings, utc(2025, 6, 2, 6), now=utc(2025, 6, 2, 6))
    assert run.emails_queued == 1


def test_voided_and_uncollectible_invoices_are_never_revenue(settings, make_user, invoice, session):
    """Revenue is paid invoices only; a failure recovered means paid. A written-off invoice that was
    later paid is revenue once; a voided one, or one left uncollectible, never (even with a paid_at)."""
    a = make_user()
    day = utc(2025, 5, 31, 9)
    invoice(a.id, status="paid", amount_cents=1000, paid_at=day)
    invoice(a.id, status="paid", amount_cents=200, paid_at=day, first_failed_at=utc(2025, 5, 30))  # recovered
    invoice(a.id, status="void", amount_cents=3000, paid_at=day, first_failed_at=utc(2025, 5, 30))
    invoice(a.id, status="uncollectible", amount_cents=5000, paid_at=day, first_failed_at=utc(2025, 5, 30))
    invoice(a.id, status="open", amount_cents=7000, first_failed_at=utc(2025, 5, 31, 1))
    tz = settings.tz
    [(key, row)] = figures_between(session, date(2025, 5, 31), date(2025, 6, 1), tz).items()
    assert key == (date(2025, 5, 31), "usd") and (row["revenue_cents"], row["invoices_paid"]) == (1200, 2)
    usd = figures(session, date(2025, 5, 31), date(2025, 5, 31), date(2025, 6, 1), tz)["currencies"]["usd"]
    assert (usd["recovered_payments"], usd["recovered_amount_cents"]) == (1, 200)
    assert (usd["failed_payments"], usd["failed_amount_cents"]) == (1, 7000)  # failures of the day, whatever came after


def test_a_paid_invoice_stays_paid_whatever_arrives_late(make_user, session):
    """Stripe's lifecycle: uncollectible may still be paid or voided, paid and void are final. A late
    marked_uncollectible of the payment's second cannot take the payment back out of revenue."""
    a = make_user(stripe_customer_id="cus_late")
    user = session.get(User, a.id)
    written_off = {**stripe_invoice("in_late", "cus_late", "sub_none", "uncollectible"), "lines": {"data": []}}
    paid = {**stripe_invoice("in_late", "cus_late", "sub_none", "paid"), "lines": {"data": []}}
    records.upsert_invoice(session, user, written_off, 100)
    records.upsert_invoice(session, user, paid, 200)
    assert records.upsert_invoice(session, user, written_off, 200).status == "paid"
    assert records.upsert_invoice(session, user, {**paid, "status": "void"}, 200).status == "paid"


def test_the_summary_reports_the_periods_reconciliation(settings, add):
    """reconcile-stripe's succeeded runs of the day, their counts summed, in the figures, the CSV and the email."""
    for slot, status, dry, recovered, repaired in [
        (utc(2025, 6, 1, 3, 30), "succeeded", False, 3, 2),   # tonight's: the next summary's
        (utc(2025, 5, 31, 3, 30), "succeeded", False, 4, 1),
        (utc(2025, 5, 31, 4), "succeeded", True, 50, 50),     # a dry run changes nothing
        (utc(2025, 5, 30, 3, 30), "failed", False, 9, 9),
    ]:
        add(JobRun, job="reconcile-stripe", slot=slot, status=status, dry_run=dry,
            details={"events_seen": 10, "events_recovered": recovered, "objects_compared": 20,
                     "objects_repaired": repaired})
    slot = utc(2025, 6, 2, 6)
    assert run_job("finance-summary", settings, slot, now=slot).status == "succeeded"
    with session_scope() as s:
        figures_of_day = s.scalar(select(FinanceSummary.figures))
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "finance-summary"))
    assert figures_of_day["reconciliation"] == {"runs": 1, "events_seen": 10, "events_recovered": 3,
                                                "objects_compared": 20, "objects_repaired": 2}
    assert "daily,2025-06-01,2025-06-01,reconcile_events_recovered,,3" in mail.attachments[0]["content"]
    text = render_email(mail.template, mail.context).text
    assert "Reconciliation with Stripe (1 run): 3 missed events recovered, 2 records repaired" in text
