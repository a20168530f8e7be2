"""/admin/dunning: open cases with step, amount, days open, next action and when; closed ones with their
outcome; pause, resume and write off, each audited; the subscriber's banner follows the case."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from billing.models import DunningCase
from saas.core.db import session_scope
from saas.core.models import AuditLog
from tests.factories import add

NOW = datetime.now(UTC)


@pytest.fixture
def case(make_user, subscription, invoice):
    user = make_user(email="fabio@example.com", name="Fabio")
    sub = subscription(user.id, status="past_due", amount_cents=2900)
    inv = invoice(user.id, status="open", amount_cents=2900, subscription_id=sub.id, first_failed_at=NOW)
    return add(DunningCase, user_id=user.id, subscription_id=sub.id, invoice_id=inv.id, amount_cents=2900,
               mrr_cents=2900, opened_at=NOW - timedelta(days=4), step=1, link_token="tok-admin")


def status_of(case_id: int) -> str:
    with session_scope() as s:
        return s.get_one(DunningCase, case_id).status


def test_the_page_lists_open_cases_with_their_next_step(client, auth, make_user, case):
    make_user(email="root@example.com", role="admin")
    auth.login("root@example.com")
    page = client.get("/admin/dunning").get_data(as_text=True)
    row = page.split(f'data-case-id="{case.id}"')[1].split("</tr>")[0]
    assert "fabio@example.com" in row and "29.00 USD" in row and "1 of 3" in row
    assert ">4<" in row  # days open
    assert "reminder email (step 2)" in row
    assert (case.opened_at + timedelta(days=7)).strftime("%Y-%m-%d") in row


def test_pause_resume_and_write_off_are_audited(client, auth, make_user, case):
    admin = make_user(email="root@example.com", role="admin")
    auth.login("root@example.com")
    assert client.post(f"/admin/dunning/{case.id}/pause").status_code == 303
    assert status_of(case.id) == "paused"
    assert "paused: no step until resumed" in client.get("/admin/dunning").get_data(as_text=True)
    client.post(f"/admin/dunning/{case.id}/resume")
    assert status_of(case.id) == "open"
    client.post(f"/admin/dunning/{case.id}/write-off", data={"note": "goodwill, customer called"})
    assert status_of(case.id) == "written_off"
    page = client.get("/admin/dunning").get_data(as_text=True)
    assert "written off" in page.split('data-table="closed-cases"')[1]
    response = client.post(f"/admin/dunning/{case.id}/pause", follow_redirects=True)
    assert "Only an open case can be paused." in response.get_data(as_text=True)
    with session_scope() as s:
        audits = s.scalars(select(AuditLog).where(AuditLog.action.startswith("dunning.")).order_by(AuditLog.id)).all()
        assert [a.action for a in audits] == ["dunning.pause", "dunning.resume", "dunning.write-off"]
        assert all(a.actor == f"admin:{admin.id}" and a.subject_id == str(case.id) for a in audits)
        assert "goodwill" not in str(audits[-1].details)  # the note stays on the case, not in the log
    assert client.post("/admin/dunning/999999/pause").status_code == 404
    assert client.post(f"/admin/dunning/{case.id}/delete").status_code == 404


def test_the_banner_shows_the_amount_and_pay_now_while_the_case_is_open(client, auth, case, sent):
    auth.login("fabio@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Your last payment of 29.00 USD failed" in page and 'action="/billing/pay-now"' in page
    response = client.post("/billing/pay-now", headers={"Accept": "application/json"})
    assert response.status_code == 202 and response.get_json()["status_url"].startswith("/billing/status/")
    assert [name for name, _kw in sent] == ["billing.tasks.pay_open_invoice"]


def test_other_roles_cannot_act(client, auth, make_user, case):
    make_user(email="fiona@example.com", role="finance")
    auth.login("fiona@example.com")
    assert client.get("/admin/dunning").status_code == 403
    assert client.post(f"/admin/dunning/{case.id}/write-off").status_code == 403
    assert status_of(case.id) == "open"
