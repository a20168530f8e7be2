"""/finance: MRR over time and its movements as server-rendered SVG with their numbers; the report form."""
from datetime import UTC, date, datetime, timedelta

import pytest

from billing.finance import FinanceSummary
from billing.finance_history import month_starts, mrr_history
from billing.models import DunningCase, MrrMovement
from saas.core.db import session_scope
from tests.web.helpers import add_subscription
from tests.web.test_finance import add_report


@pytest.fixture
def finance(make_user, auth):
    user = make_user(email="fiona@example.com", role="finance")
    auth.login("fiona@example.com")
    return user


def test_month_starts_cross_the_year():
    assert month_starts(date(2026, 2, 17), 3) == [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]


def test_mrr_history_ends_on_todays_mrr_and_steps_back_by_the_movements(settings, make_user, add, today):
    user = make_user()
    add_subscription(user.id, amount_cents=5000)
    start = month_starts(today, 2)[0]
    last_month = datetime(start.year, start.month, 10, 12, tzinfo=UTC)
    add(MrrMovement, at=last_month, kind="new", currency="usd", mrr_before_cents=0, mrr_after_cents=3000)
    add(MrrMovement, at=datetime.now(UTC) - timedelta(seconds=5), kind="expansion", currency="usd",
        mrr_before_cents=3000, mrr_after_cents=5000)
    with session_scope() as s:
        months = mrr_history(s, today, settings.tz)["usd"]
    assert len(months) == 12 and months[-1].start == today.replace(day=1)
    assert months[-1].mrr_cents == 5000 and months[-1].movements["expansion"] == 2000
    assert months[-2].mrr_cents == 3000 and months[-2].movements["new"] == 3000
    assert months[-3].mrr_cents == 0


def test_mrr_dunning_recovered_stands_beside_the_movements(client, finance, settings, make_user, add, today):
    user = make_user()
    add_subscription(user.id, amount_cents=2900)
    add(DunningCase, user_id=user.id, amount_cents=2900, mrr_cents=2900, status="recovered", cause="card_updated", link_token="tok-recovered",
        opened_at=datetime.now(UTC) - timedelta(minutes=10), closed_at=datetime.now(UTC) - timedelta(seconds=5))
    with session_scope() as s:
        months = mrr_history(s, today, settings.tz)["usd"]
    assert months[-1].recovered_cents == 2900 and months[-1].net_cents == 0  # won back: no movement of MRR
    page = client.get("/finance").get_data(as_text=True)
    assert "Recovered MRR" in page and "Recovered by dunning (not in net)" in page
    assert 'class="bar bar-recovered"' in page  # its bar, beside the month's movements


def test_overview_shows_charts_tables_and_figures_against_last_month(client, finance, make_user):
    user = make_user()
    add_subscription(user.id, amount_cents=6217)
    page = client.get("/finance").get_data(as_text=True)
    assert page.count('<svg class="chart chart-wide"') == 2 and page.count('<svg class="chart chart-narrow"') == 2
    assert 'role="img"' in page
    assert "MRR over time (USD)" in page and "MRR movements (USD)" in page
    assert "62.17 USD" in page and "6217" not in page
    assert "at the end of" in page  # each figure against the previous period
    assert "<script" not in page.split("</main>")[0]  # readable without JavaScript
    assert "No summary yet" in page


def test_overview_shows_the_latest_summary_beside_the_day_before(client, finance):
    with session_scope() as s:
        for day, mrr in ((1, 1000), (2, 1500)):
            start = datetime(2025, 3, day).date()
            s.add(FinanceSummary(period="daily", period_start=start, period_end=start, csv="",
                                 figures={"currencies": {"usd": {"mrr_cents": mrr}}, "active_subscriptions": day}))
    page = client.get("/finance/").get_data(as_text=True)
    assert "Latest daily summary: 2025-03-02" in page
    assert "15.00 USD" in page and "10.00 USD" in page and "+5.00 USD" in page


def test_report_form_keeps_its_values_and_the_notice_stays_with_the_report(client, finance, sent):
    response = client.post("/finance/reports", data={"start": "2025-01-01", "end": "2025-02-15"})
    assert response.status_code == 302 and "start=2025-01-01" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'value="2025-01-01"' in page and 'value="2025-02-15"' in page
    assert 'data-role="notice"' in page and "Being built" in page
    done = add_report(status="done", progress=100, csv="date\n")
    page = client.get("/finance/reports").get_data(as_text=True)
    item = page.split(f'data-report-id="{done}"', 1)[1].split("</li>", 1)[0]
    assert "Being built" not in item
