"""Admin pages: access by role, the dormant queue, its actions, jobs, outbox, audit log."""
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from saas.core.db import session_scope
from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage
from tests.web.helpers import add_invoice, add_subscription

NOW = datetime.now(UTC)


@pytest.fixture
def admin(make_user, auth):
    user = make_user(email="root@example.com", role="admin", name="Root")
    auth.login("root@example.com")
    return user


def dormant(make_user, email, days_seen=250, warned_days=35, due_days=-5, **columns):
    return make_user(email=email, last_seen_at=NOW - timedelta(days=days_seen),
                     inactive_warned_at=NOW - timedelta(days=warned_days),
                     purge_due_at=NOW + timedelta(days=due_days), **columns)


def audit_rows() -> list[AuditLog]:
    with session_scope() as s:
        rows = list(s.scalars(select(AuditLog).order_by(AuditLog.id)))
        s.expunge_all()
        return rows


def get_user(user_id: int) -> User:
    with session_scope() as s:
        user = s.get(User, user_id)
        s.expunge(user)
        return user


ADMIN_GETS = ["/admin/dormant", "/admin/jobs", "/admin/outbox", "/admin/audit"]
ADMIN_POSTS = ["/admin/dormant/act", "/admin/jobs/finance-summary/run", "/admin/outbox/1/retry"]


@pytest.mark.parametrize("path", ADMIN_GETS + ADMIN_POSTS)
@pytest.mark.parametrize(("role", "expected"), [(None, 302), ("subscriber", 403), ("finance", 403)])
def test_admin_pages_need_the_admin_role(client, make_user, auth, path, role, expected):
    if role:
        make_user(email="who@example.com", role=role)
        auth.login("who@example.com")
    method = client.post if path in ADMIN_POSTS else client.get
    response = method(path)
    assert response.status_code == expected
    if expected == 302:
        assert "/login" in response.location
    assert audit_rows() == []


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_admin_pages_render_for_admins(client, admin, path):
    assert client.get(path).status_code == 200


def test_queue_lists_warned_accounts_with_protection_reasons(client, admin, make_user):
    free = dormant(make_user, "free@example.com")
    paying = dormant(make_user, "paying@example.com")
    add_subscription(paying.id, status="active")
    owing = dormant(make_user, "owing@example.com")
    add_invoice(owing.id, status="open")
    exempt = dormant(make_user, "exempt@example.com", purge_exempt_reason="Legal hold", purge_exempt_at=NOW)
    make_user(email="active@example.com")  # not warned: not in the queue
    make_user(email="gone@example.com", purge_due_at=NOW, purged_at=NOW)  # already purged
    page = client.get("/admin/dormant").get_data(as_text=True)
    for user in (free, paying, owing, exempt):
        assert f'data-user-id="{user.id}"' in page
    assert "active@example.com" not in page and "gone@example.com" not in page
    assert "subscription active" in page and "unpaid invoice" in page and "exempted by an admin" in page
    assert "Legal hold" in page


@pytest.mark.parametrize(("query", "shown", "hidden"), [
    ("protected=yes", ["paying"], ["free", "old"]),
    ("protected=no", ["free", "old"], ["paying"]),
    ("why=subscription+active", ["paying"], ["free", "old"]),
    ("seen_before=" + (NOW - timedelta(days=300)).date().isoformat(), ["old"], ["free", "paying"]),
    ("due_before=" + NOW.date().isoformat(), ["free", "paying"], ["old"]),
    ("warned_before=" + (NOW - timedelta(days=50)).date().isoformat(), ["old"], ["free", "paying"]),
])
def test_queue_filters(client, admin, make_user, query, shown, hidden):
    dormant(make_user, "free@example.com")
    add_subscription(dormant(make_user, "paying@example.com").id, status="active")
    dormant(make_user, "old@example.com", days_seen=400, warned_days=60, due_days=3)
    page = client.get(f"/admin/dormant?{query}").get_data(as_text=True)
    for name in shown:
        assert f"{name}@example.com" in page
    for name in hidden:
        assert f"{name}@example.com" not in page


@pytest.mark.parametrize(("sort", "direction", "order"), [
    ("last_seen", "asc", ["b", "a", "c"]),
    ("last_seen", "desc", ["c", "a", "b"]),
    ("purge_due", "asc", ["c", "b", "a"]),
    ("warned", "desc", ["a", "c", "b"]),
    ("email", "asc", ["a", "b", "c"]),
])
def test_queue_sorts(client, admin, make_user, sort, direction, order):
    dormant(make_user, "a@example.com", days_seen=250, warned_days=10, due_days=9)
    dormant(make_user, "b@example.com", days_seen=300, warned_days=40, due_days=5)
    dormant(make_user, "c@example.com", days_seen=200, warned_days=20, due_days=1)
    page = client.get(f"/admin/dormant?sort={sort}&dir={direction}").get_data(as_text=True)
    positions = [page.index(f'aria-label="Select {n}@example.com"') for n in order]
    assert positions == sorted(positions)


@pytest.mark.parametrize("query", ["sort=nope", "dir=up", "protected=maybe", "seen_before=yesterday"])
def test_queue_rejects_bad_parameters(client, admin, query):
    assert client.get(f"/admin/dormant?{query}").status_code == 400


def test_exempt_with_reason_then_remove(client, admin, make_user):
    user = dormant(make_user, "dario@example.com")
    response = client.post("/admin/dormant/act", data={"ids": user.id, "action": "exempt",
                                                       "reason": "Customer asked by phone", "confirm": "yes"})
    assert response.status_code == 302
    after = get_user(user.id)
    assert after.purge_exempt_reason == "Customer asked by phone" and after.purge_exempt_by_id == admin.id
    client.post("/admin/dormant/act", data={"ids": user.id, "action": "unexempt", "confirm": "yes"})
    assert get_user(user.id).purge_exempt_reason is None
    assert [(a.action, a.actor, a.actor_id, a.subject_id) for a in audit_rows()] == [
        ("dormant.exempt", f"admin:{admin.id}", admin.id, str(user.id)),
        ("dormant.unexempt", f"admin:{admin.id}", admin.id, str(user.id)),
    ]


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "exempt", "reason": "", "confirm": "yes"}, "An exemption needs a reason"),
    ({"action": "exempt", "reason": "x" * 501, "confirm": "yes"}, "under 500 characters"),
    ({"action": "delete-everything", "confirm": "yes"}, "Choose what to do"),
    ({"action": "unexempt", "confirm": "yes", "ids": ""}, "Select at least one account"),
    ({"action": "unexempt", "confirm": "yes", "ids": "abc"}, "The selection is not valid"),
])
def test_bad_actions_are_400_and_change_nothing(client, admin, make_user, data, message):
    user = dormant(make_user, "dario@example.com")
    response = client.post("/admin/dormant/act", data={"ids": user.id, **data})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert get_user(user.id).purge_exempt_reason is None and audit_rows() == []


def test_approve_purge_asks_for_confirmation_then_enqueues_the_purge(client, admin, make_user, sent):
    user = dormant(make_user, "dario@example.com")
    confirm = client.post("/admin/dormant/act", data={"ids": user.id, "action": "approve"})
    assert confirm.status_code == 200 and b"Confirm: Approve purge now" in confirm.data
    assert get_user(user.id).purge_approved_at is None and sent == [] and audit_rows() == []
    done = client.post("/admin/dormant/act", data={"ids": user.id, "action": "approve", "confirm": "yes"})
    assert done.status_code == 302
    assert get_user(user.id).purge_approved_at is not None
    assert sent == [("scheduled.tasks.purge_account", {"user_id": user.id, "actor": f"admin:{admin.id}"})]
    [row] = audit_rows()
    assert row.action == "dormant.approve-purge" and row.subject_id == str(user.id)


def test_approving_a_protected_account_is_refused_and_audited(client, admin, make_user, sent):
    user = dormant(make_user, "elena@example.com")
    add_subscription(user.id, status="past_due")
    response = client.post("/admin/dormant/act", data={"ids": user.id, "action": "approve", "confirm": "yes"},
                           follow_redirects=True)
    assert b"refused because they are protected" in response.data
    assert get_user(user.id).purge_approved_at is None and sent == []
    [row] = audit_rows()
    assert row.action == "dormant.approve-refused" and row.details["protected_by"] == "subscription past_due"


def test_bulk_exempt_with_confirmation(client, admin, make_user):
    users = [dormant(make_user, f"u{i}@example.com") for i in range(3)]
    data = {"ids": [u.id for u in users], "action": "exempt", "reason": "Enterprise contract"}
    confirm = client.post("/admin/dormant/act", data=data)
    assert confirm.status_code == 200 and b"This applies to 3 accounts" in confirm.data
    assert audit_rows() == []
    client.post("/admin/dormant/act", data={**data, "confirm": "yes"})
    assert all(get_user(u.id).purge_exempt_reason == "Enterprise contract" for u in users)
    rows = audit_rows()
    assert [r.action for r in rows] == ["dormant.exempt"] * 3 and all(r.details == {"bulk": True, "reason": "Enterprise contract"} for r in rows)


def test_jobs_page_lists_jobs_and_runs(client, admin):
    from scheduled.models import JobRun

    with session_scope() as s:
        s.add(JobRun(job="flag-expiring-cards", slot=NOW - timedelta(hours=3), status="failed", scanned=10,
                     changed=2, emails_queued=2, finished_at=NOW, started_at=NOW - timedelta(seconds=4),
                     error="OperationalError: boom"))
    page = client.get("/admin/jobs").get_data(as_text=True)
    for name in ("flag-expiring-cards", "remind-inactive-users", "purge-dormant-accounts", "finance-summary",
                 "reconcile-stripe"):
        assert f'data-job="{name}"' in page
    assert "OperationalError: boom" in page and "4.0 s" in page and "next run" in page


@pytest.mark.parametrize(("dry_run", "action"), [("", "job.run-now"), ("1", "job.dry-run")])
def test_run_now_and_dry_run_enqueue_through_the_ledger(client, admin, sent, dry_run, action):
    response = client.post("/admin/jobs/flag-expiring-cards/run", data={"dry_run": dry_run})
    assert response.status_code == 302
    [(name, kwargs)] = sent
    assert name == "scheduled.tasks.run_job" and kwargs["job"] == "flag-expiring-cards"
    assert kwargs["dry_run"] is bool(dry_run) and datetime.fromisoformat(kwargs["slot_iso"]) <= datetime.now(UTC)
    [row] = audit_rows()
    assert row.action == action and row.subject_id == "flag-expiring-cards"


def test_unknown_job_is_404(client, admin, sent):
    assert client.post("/admin/jobs/rm-rf/run").status_code == 404 and sent == []


def _outbox(status: str, **values) -> int:
    from saas.core.outbox import queue_email

    with session_scope() as s:
        queue_email(s, key=f"t:{status}", kind="welcome", to="x@example.com", template="welcome", context={"name": "X"})
        s.execute(update(OutboxMessage).where(OutboxMessage.idempotency_key == f"t:{status}")
                  .values(status=status, **values))
        return s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == f"t:{status}"))


def test_outbox_page_shows_statuses_and_last_error(client, admin, sent):
    _outbox("sent", sent_at=NOW)
    failed = _outbox("failed", attempts=6, last_error="SMTPDataError: 451 try later")
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "451 try later" in page and f'/admin/outbox/{failed}/retry' in page
    only_failed = client.get("/admin/outbox?status=failed").get_data(as_text=True)
    assert "pill-sent" not in only_failed and "pill-failed" in only_failed
    assert client.get("/admin/outbox?status=lost").status_code == 400


def test_retry_sets_pending_now_enqueues_delivery_and_audits(client, admin, sent):
    failed = _outbox("failed", attempts=6, last_error="boom", next_attempt_at=NOW + timedelta(days=1))
    sent.clear()
    assert client.post(f"/admin/outbox/{failed}/retry").status_code == 302
    with session_scope() as s:
        row = s.get(OutboxMessage, failed)
        assert row.status == "pending" and row.next_attempt_at <= datetime.now(UTC)
    assert ("scheduled.delivery.deliver_outbox", {}) in sent
    [audit] = audit_rows()
    assert audit.action == "outbox.retry" and audit.subject_id == str(failed) and "x@example.com" not in str(audit.details)


def test_retry_of_a_sent_email_changes_nothing(client, admin, sent):
    done = _outbox("sent", sent_at=NOW)
    sent.clear()
    client.post(f"/admin/outbox/{done}/retry")
    assert audit_rows() == [] and sent == []


def test_retry_leaves_a_row_a_worker_is_sending_alone(client, admin, sent):
    held = _outbox("sending", claimed_by="worker-1", claimed_at=NOW, attempts=1)
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert f"/admin/outbox/{held}/retry" not in page  # not offered
    sent.clear()
    response = client.post(f"/admin/outbox/{held}/retry", follow_redirects=True)
    assert "being sent right now" in response.get_data(as_text=True)
    with session_scope() as s:
        row = s.get(OutboxMessage, held)
        assert (row.status, row.claimed_by) == ("sending", "worker-1")
    assert audit_rows() == [] and sent == []


def test_every_admin_action_is_audited_without_personal_data(client, admin, make_user, sent):
    user = dormant(make_user, "private.person@example.com", name="Private Person")
    failed = _outbox("failed", last_error="x")
    actions = [
        ("/admin/dormant/act", {"ids": user.id, "action": "exempt", "reason": "VIP", "confirm": "yes"}),
        ("/admin/dormant/act", {"ids": user.id, "action": "unexempt", "confirm": "yes"}),
        ("/admin/dormant/act", {"ids": user.id, "action": "approve", "confirm": "yes"}),
        ("/admin/jobs/purge-dormant-accounts/run", {}),
        ("/admin/jobs/purge-dormant-accounts/run", {"dry_run": "1"}),
        (f"/admin/outbox/{failed}/retry", {}),
    ]
    for number, (path, data) in enumerate(actions, start=1):
        assert client.post(path, data=data).status_code == 302
        assert len(audit_rows()) == number, path
    for row in audit_rows():
        assert row.actor == f"admin:{admin.id}"
        assert "private" not in str(row.details).lower() and "@" not in str(row.details)


def test_audit_log_page_lists_and_filters(client, admin, make_user, sent):
    user = dormant(make_user, "dario@example.com")
    client.post("/admin/dormant/act", data={"ids": user.id, "action": "exempt", "reason": "VIP", "confirm": "yes"})
    client.post("/admin/jobs/finance-summary/run", data={})
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "dormant.exempt" in page and "job.run-now" in page
    # In words: the actor's email, the subject as a link, the reason, details rendered (not JSON).
    assert admin.email in page and f"admin:{admin.id}" not in page
    assert "exempted from purge" in page and "“VIP”" in page and '{"' not in page
    assert f'href="/admin/audit?subject=user:{user.id}">dario@example.com</a>' in page
    assert 'href="/admin/jobs#job-finance-summary">finance-summary</a>' in page
    about = client.get(f"/admin/audit?subject=user:{user.id}").get_data(as_text=True)
    assert "exempted from purge" in about and "job run now" not in about
    filtered = client.get("/admin/audit?action=job.").get_data(as_text=True)
    assert "job.run-now" in filtered and "dormant.exempt" not in filtered
