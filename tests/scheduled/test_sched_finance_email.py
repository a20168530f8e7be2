"""The finance summary email: money, not cents; each figure beside the previous period's; the page's rows."""
from __future__ import annotations

from sqlalchemy import select

from billing.finance import FinanceSummary
from billing.finance_table import summary_rows
from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage
from scheduled.runner import run_job
from tests.helpers import utc


def _mail(key: str) -> OutboxMessage:
    with session_scope() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
        s.expunge(row)
        return row


def test_summary_email_shows_money_beside_the_previous_day_and_links_the_report(settings, make_user, subscription):
    a = make_user()
    subscription(a.id, amount_cents=6217, created_at=utc(2025, 5, 1))
    run_job("finance-summary", settings, utc(2025, 6, 2, 6), now=utc(2025, 6, 2, 6))
    subscription(a.id, amount_cents=1000, created_at=utc(2025, 6, 2, 12))
    run_job("finance-summary", settings, utc(2025, 6, 3, 6), now=utc(2025, 6, 3, 6))
    email = _mail("finance-summary:daily:2025-06-02").render()
    for part in (email.text, email.html):
        assert "72.17 USD" in part and "62.17 USD" in part and "+10.00 USD" in part
        assert "6217" not in part and "7217" not in part
        assert f"{settings.app_url}/finance" in part
    line = next(li for li in email.text.splitlines() if li.startswith("MRR  "))
    assert line.split() == ["MRR", "72.17", "USD", "62.17", "USD", "+10.00", "USD"]
    first = _mail("finance-summary:daily:2025-06-01").render()
    assert "62.17 USD" in first.text and "—" in first.text  # no day before it: no previous figures
    with session_scope() as s:
        figures = s.scalar(select(FinanceSummary.figures).where(FinanceSummary.period_start == utc(2025, 6, 2).date()))
    assert figures["currencies"]["usd"]["mrr_cents"] == 7217  # the CSV and the row keep cents


def test_purges_pending_counts_only_accounts_the_purge_may_take(settings, make_user, subscription):
    warned = {"inactive_warned_at": utc(2025, 5, 1), "purge_due_at": utc(2025, 5, 31)}
    make_user(**warned)
    make_user(**warned, purge_exempt_reason="VIP")
    paying = make_user(**warned)
    subscription(paying.id, status="active", amount_cents=100, created_at=utc(2025, 1, 1))
    make_user(**warned, credit_balance_cents=500)
    run_job("finance-summary", settings, utc(2025, 6, 2, 6), now=utc(2025, 6, 2, 6))
    with session_scope() as s:
        figures = s.scalar(select(FinanceSummary.figures))
    assert figures["purges_pending"] == 1


def test_summary_rows_compare_with_the_previous_period():
    now = {"currencies": {"usd": {"mrr_cents": 5000, "failed_payments": 2}}, "active_subscriptions": 3}
    before = {"currencies": {"usd": {"mrr_cents": 6000, "failed_payments": 2}}, "active_subscriptions": 1}
    rows = {r["label"]: r for r in summary_rows(now, before) if "label" in r}
    assert rows["MRR"] == {"label": "MRR", "value": "50.00 USD", "previous": "60.00 USD", "change": "−10.00 USD"}
    assert rows["Failed payments"]["change"] == "no change" and rows["Active subscriptions"]["change"] == "+2"
    assert summary_rows(now, None)[1]["previous"] == "—"
