"""Accounts: sign up, sign in, sign out, passwords, roles, activity."""
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from saas.core.db import session_scope
from saas.core.models import User
from saas.core.outbox import OutboxMessage
from tests.helpers import PASSWORD, wait_until


def count(model) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_signup_creates_account_signs_in_and_queues_welcome(client):
    response = client.post("/signup", data={"email": "New@Example.com", "password": PASSWORD, "name": "Nia"})
    assert response.status_code == 302 and response.location.endswith("/dashboard")
    assert client.get("/dashboard").status_code == 200
    with session_scope() as s:
        user = s.scalar(select(User))
        assert user.email == "new@example.com" and user.password_hash.startswith("$argon2")
        assert s.scalar(select(OutboxMessage.idempotency_key)) == f"welcome:{user.id}"


@pytest.mark.parametrize(("data", "message"), [
    ({"email": "not-an-email", "password": PASSWORD}, b"Invalid email"),
    ({"email": "a@example.com", "password": "short1"}, b"at least 10 characters"),
    ({"email": "a@example.com", "password": "onlyletterslong"}, b"Mix letters"),
    ({"email": "a@example.com", "password": "password123"}, b"too easy"),
    ({"email": "", "password": PASSWORD}, b"This field is required"),
])
def test_bad_signup_rerenders_with_message_and_writes_nothing(client, data, message):
    response = client.post("/signup", data=data)
    assert response.status_code == 400
    assert message in response.data
    assert data["email"].encode() in response.data  # what was typed is kept
    assert count(User) == 0 and count(OutboxMessage) == 0


def test_signup_with_existing_email(client, make_user):
    make_user(email="taken@example.com")
    response = client.post("/signup", data={"email": "TAKEN@example.com", "password": PASSWORD})
    assert response.status_code == 400 and b"already exists" in response.data
    assert count(User) == 1 and count(OutboxMessage) == 0


def test_wrong_password_and_unknown_account_look_the_same(client, make_user):
    make_user(email="ana@example.com")
    wrong = client.post("/login", data={"email": "ana@example.com", "password": "nope-nope-1"})
    unknown = client.post("/login", data={"email": "ghost@example.com", "password": "nope-nope-1"})
    assert wrong.status_code == unknown.status_code == 400
    assert b"Wrong email or password" in wrong.data and b"Wrong email or password" in unknown.data


def test_login_logout(client, auth, make_user):
    make_user(email="ana@example.com")
    assert auth.login("ana@example.com").status_code == 302
    assert client.get("/dashboard").status_code == 200
    auth.logout()
    assert client.get("/dashboard").status_code == 302


def test_login_ignores_offsite_next(client, make_user):
    make_user(email="ana@example.com")
    response = client.post("/login?next=//evil.example/x", data={"email": "ana@example.com", "password": PASSWORD})
    assert response.location.endswith("/dashboard")


@pytest.mark.parametrize("role, home", [("subscriber", "/dashboard"), ("admin", "/admin"), ("finance", "/finance")])
def test_sign_in_lands_on_the_roles_home_unless_next_says_otherwise(client, make_user, role, home):
    make_user(email="staff@example.com", role=role)
    form = {"email": "staff@example.com", "password": PASSWORD}
    assert client.post("/login", data=form).location == home
    client.post("/logout")
    assert client.post("/login?next=/billing", data=form).location == "/billing"


def test_change_password_signs_out_other_sessions(app, make_user):
    make_user(email="ana@example.com")
    first, second = app.test_client(), app.test_client()
    for c in (first, second):
        c.post("/login", data={"email": "ana@example.com", "password": PASSWORD})
    response = first.post("/account/password", data={
        "current_password": PASSWORD, "password": "brand-new-pass-9", "confirm": "brand-new-pass-9"})
    assert response.status_code == 302
    assert first.get("/dashboard").status_code == 200
    assert second.get("/dashboard").status_code == 302


def test_password_reset_by_email_works_once(client, make_user, celery_worker, mail):
    make_user(email="ana@example.com")
    client.post("/password/forgot", data={"email": "ana@example.com"})
    message = wait_for_mail(mail, 1)[0]
    body = message.get_body(("plain",)).get_content()
    link = next(line for line in body.splitlines() if "/password/reset/" in line).strip()
    path = link[link.index("/password/reset/"):]
    data = {"password": "fresh-pass-word-7", "confirm": "fresh-pass-word-7"}
    assert client.post(path, data=data).status_code == 302
    client.post("/logout")
    assert client.post("/login", data={"email": "ana@example.com", "password": "fresh-pass-word-7"}).status_code == 302
    client.post("/logout")
    again = client.post(path, data=data)
    assert again.status_code == 302 and "/password/forgot" in again.location


def test_reset_token_expires(settings, client, make_user):
    user = make_user(email="ana@example.com")
    from saas.core.accounts import make_reset_token

    with client.application.test_request_context(), session_scope() as s:
        token = make_reset_token(s.get(User, user.id), settings.secret_key)
    with freeze_time(datetime.now(UTC) + timedelta(hours=2)):
        response = client.get(f"/password/reset/{token}")
    assert response.status_code == 302 and "/password/forgot" in response.location


def test_forgot_password_does_not_reveal_accounts(client):
    response = client.post("/password/forgot", data={"email": "ghost@example.com"}, follow_redirects=True)
    assert b"If an account exists" in response.data
    assert count(OutboxMessage) == 0


@pytest.mark.parametrize("path", ["/admin/dormant", "/admin/jobs", "/finance/reports"])
@pytest.mark.parametrize(("role", "expected"), [(None, 302), ("subscriber", 403)])
def test_role_pages_refuse_others(client, auth, make_user, path, role, expected):
    if role:
        make_user(email="someone@example.com", role=role)
        auth.login("someone@example.com")
    response = client.get(path)
    assert response.status_code == expected
    if expected == 302:
        assert "/login" in response.location


def test_activity_written_at_most_every_five_minutes(client, auth, make_user):
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    user = make_user(email="ana@example.com", last_seen_at=start - timedelta(days=10))
    with freeze_time(start):
        auth.login("ana@example.com")
    with freeze_time(start + timedelta(minutes=4)):
        client.get("/dashboard")
    with session_scope() as s:
        assert s.get(User, user.id).last_seen_at == start
    with freeze_time(start + timedelta(minutes=6)):
        client.get("/dashboard")
    with session_scope() as s:
        assert s.get(User, user.id).last_seen_at == start + timedelta(minutes=6)


def test_sign_in_clears_inactivity_warning(auth, make_user):
    now = datetime.now(UTC)
    user = make_user(email="carla@example.com", inactive_warned_at=now - timedelta(days=3),
                     purge_due_at=now + timedelta(days=27), last_seen_at=now - timedelta(days=200))
    auth.login("carla@example.com")
    with session_scope() as s:
        fresh = s.get(User, user.id)
        assert fresh.inactive_warned_at is None and fresh.purge_due_at is None
        assert fresh.deletion_cancelled_at is not None


def wait_for_mail(mail, n, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = mail.messages()
        if len(messages) >= n:
            return messages
        time.sleep(0.1)
    raise AssertionError(f"expected {n} messages, got {len(mail.messages())}")


def test_signup_email_travels_outbox_worker_smtp(client, celery_worker, mail):
    """The end-to-end path: signup -> outbox row -> real worker -> real SMTP sink."""
    client.post("/signup", data={"email": "nia@example.com", "password": PASSWORD, "name": "Nia"})
    [message] = wait_for_mail(mail, 1)
    assert message["To"] == "nia@example.com" and message["Subject"] == "Welcome to Acme SaaS"

    def sent_row():  # the worker records "sent" just after the sink has the message
        with session_scope() as s:
            row = s.scalar(select(OutboxMessage))
            return row if row.status == "sent" else None

    row = wait_until(sent_row, "the outbox row to be marked sent")
    assert message["Message-ID"] == row.message_id
