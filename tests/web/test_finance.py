"""Finance pages: access, summaries, the report form, the report task, live progress and download."""
import json
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from billing.finance import FinanceReport, FinanceSummary
from saas.core.db import session_scope
from tests.web.helpers import add_invoice, add_subscription


@pytest.fixture
def finance(make_user, auth):
    user = make_user(email="fiona@example.com", role="finance")
    auth.login("fiona@example.com")
    return user


def add_report(status="running", progress=0, csv=None, start="2025-01-01", end="2025-01-31") -> int:
    with session_scope() as s:
        report = FinanceReport(status=status, progress=progress, csv=csv, params={"start": start, "end": end})
        s.add(report)
        s.flush()
        return report.id


@pytest.mark.parametrize("path", ["/finance/reports", "/finance/reports/1/status", "/finance/reports/1/events",
                                  "/finance/reports/1.csv"])
@pytest.mark.parametrize(("role", "expected"), [(None, 302), ("subscriber", 403)])
def test_finance_pages_need_finance_or_admin(client, make_user, auth, path, role, expected):
    if role:
        make_user(email="who@example.com", role=role)
        auth.login("who@example.com")
    assert client.get(path).status_code == expected


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_finance_and_admin_see_the_page(client, make_user, auth, role):
    make_user(email="who@example.com", role=role)
    auth.login("who@example.com")
    assert client.get("/finance/reports").status_code == 200


def test_latest_summaries_with_csv(client, finance):
    with session_scope() as s:
        s.add(FinanceSummary(period="daily", period_start=date(2025, 3, 1), period_end=date(2025, 3, 1),
                             figures={"currencies": {"usd": {"mrr_cents": 123400}}, "active_subscriptions": 7,
                                      "new_subscriptions": 1, "cancelled_subscriptions": 0}, csv="a,b\n1,2\n"))
    page = client.get("/finance/reports").get_data(as_text=True)
    assert "2025-03-01" in page and "1,234.00 USD" in page and "123400" not in page and "7 active" in page
    with session_scope() as s:
        summary_id = s.scalar(select(FinanceSummary.id))
    response = client.get(f"/finance/summaries/{summary_id}.csv")
    assert response.data == b"a,b\n1,2\n" and "attachment" in response.headers["Content-Disposition"]


@pytest.mark.parametrize(("start", "end", "message"), [
    ("", "2025-01-31", "Enter the first day"),
    ("2025-01-01", "", "Enter the last day"),
    ("yesterday", "2025-01-31", "like 2025-01-01"),
    ("2025-02-01", "2025-01-31", "must not be before the first day"),
    ("2019-01-01", "2025-01-31", "at most three years"),
    ("today-10", "today+30", "cannot be in the future"),  # days from the product's today
])
def test_report_form_validation(client, finance, sent, today, start, end, message):
    def day(text):
        return (today + timedelta(days=int(text[5:]))).isoformat() if text.startswith("today") else text

    response = client.post("/finance/reports", data={"start": day(start), "end": day(end)})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    with session_scope() as s:
        assert s.scalar(select(FinanceReport.id)) is None
    assert sent == []


def test_requesting_a_report_stores_it_and_enqueues_the_task(client, finance, sent):
    response = client.post("/finance/reports", data={"start": "2025-01-01", "end": "2025-01-31"})
    assert response.status_code == 302
    with session_scope() as s:
        report = s.scalar(select(FinanceReport))
        assert report.status == "queued" and report.params == {"start": "2025-01-01", "end": "2025-01-31"}
        assert report.requested_by_id == finance.id
    assert sent == [("scheduled.reports.build_finance_report", {"report_id": report.id})]
    # A reload (or a new tab) finds the report again, wired to its live progress.
    page = client.get("/finance/reports").get_data(as_text=True)
    assert f'data-events="/finance/reports/{report.id}/events"' in page and "<progress" in page


def test_report_csv_figures(settings, session, make_user):
    from billing.finance import revenue_churn_csv

    user = make_user(email="payer@example.com")
    add_invoice(user.id, amount_cents=2900, paid_at=datetime(2025, 1, 2, 12, tzinfo=UTC))
    add_invoice(user.id, amount_cents=1000, paid_at=datetime(2025, 1, 2, 13, tzinfo=UTC))
    add_invoice(user.id, amount_cents=5000, status="open")
    sub_id = add_subscription(user.id)
    from billing.models import MrrMovement

    with session_scope() as s:
        s.add_all([
            MrrMovement(subscription_id=sub_id, at=datetime(2025, 1, 3, 9, tzinfo=UTC), kind="new",
                        currency="usd", mrr_before_cents=0, mrr_after_cents=2900),
            MrrMovement(subscription_id=sub_id, at=datetime(2025, 1, 3, 10, tzinfo=UTC), kind="churn",
                        currency="usd", mrr_before_cents=2900, mrr_after_cents=0),
        ])
    seen = []
    lines = revenue_churn_csv(session, date(2025, 1, 1), date(2025, 1, 20), settings.tz, seen.append).splitlines()
    assert lines[0] == "date,currency,revenue_cents,invoices_paid,new_mrr_cents,churned_mrr_cents,new_subscriptions,churned_subscriptions"
    assert len(lines) == 21
    assert "2025-01-02,USD,3900,2,0,0,0,0" in lines and "2025-01-03,USD,0,0,2900,2900,1,1" in lines
    assert seen == sorted(seen) and len(seen) == 3 and seen[-1] == 99


def test_report_task_runs_in_a_worker_and_the_file_downloads(client, finance, celery_worker):
    client.post("/finance/reports", data={"start": "2025-01-01", "end": "2025-02-15"})
    with session_scope() as s:
        report_id = s.scalar(select(FinanceReport.id))
    for _ in range(300):
        state = client.get(f"/finance/reports/{report_id}/status").get_json()
        if state["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert state == {"id": report_id, "status": "done", "progress": 100,
                     "download": f"/finance/reports/{report_id}.csv"}
    response = client.get(state["download"])
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="revenue-churn-2025-01-01-to-2025-02-15.csv"' in response.headers["Content-Disposition"]
    assert response.get_data(as_text=True).count("\n") == 1 + 46


def test_download_before_done_is_404(client, finance):
    report_id = add_report(status="running", progress=40)
    assert client.get(f"/finance/reports/{report_id}.csv").status_code == 404


def _events(response) -> list[dict]:
    body = b"".join(response.response).decode()
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


def test_events_stream_forwards_published_progress_until_done(client, finance):
    from scheduled.reports import publish

    report_id = add_report(status="running", progress=40)
    response = client.get(f"/finance/reports/{report_id}/events", buffered=False)
    assert response.mimetype == "text/event-stream"
    publish(report_id, "running", 70)  # after the view subscribed, as the worker would
    publish(report_id, "done", 100)
    states = _events(response)
    assert [(s["status"], s["progress"]) for s in states] == [("running", 40), ("running", 70), ("done", 100)]
    assert states[-1]["download"] == f"/finance/reports/{report_id}.csv"


def test_events_of_a_finished_report_end_at_once(client, finance):
    report_id = add_report(status="done", progress=100, csv="x\n")
    states = _events(client.get(f"/finance/reports/{report_id}/events", buffered=False))
    assert [(s["status"], s["progress"]) for s in states] == [("done", 100)]


def test_events_start_from_the_latest_published_progress(client, finance):
    from scheduled.reports import publish

    report_id = add_report(status="running", progress=10)
    publish(report_id, "running", 55)  # published, not yet written to the row
    response = client.get(f"/finance/reports/{report_id}/events", buffered=False)
    publish(report_id, "failed", 55)
    assert [(s["status"], s["progress"]) for s in _events(response)] == [("running", 55), ("failed", 55)]
