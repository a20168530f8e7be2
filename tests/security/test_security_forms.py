"""Forms under fuzz: sign-up, sign-in, contact and the admin actions never answer 500 and never write half."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saas.core.models import AuditLog, User
from saas.core.outbox import OutboxMessage
from tests.helpers import PASSWORD
from tests.security.fuzzing import fuzz, table_counts, table_rows, tried
from tests.web.helpers import add_subscription

NOW = datetime.now(UTC)
# Any text, the control characters and NUL included (hypothesis leaves out lone surrogates, as HTTP does).
anything = st.one_of(st.text(max_size=80), st.sampled_from(["\x00", "a\x00b", "\r\n", "\u202e", "' OR 1=1 --",
                                                           "<script>x</script>", "%00", "\ufeff"]))
long_text = st.text(min_size=300, max_size=6000)
emails = st.one_of(st.emails(), anything, st.emails().map(lambda e: f"  {e.upper()} "), long_text)
passwords = st.one_of(anything, st.just(PASSWORD), st.text(min_size=10, max_size=40), long_text)


def assert_clean_answer(response, *allowed: int) -> None:
    """One of the intended answers; a rejected form re-renders with a message."""
    assert response.status_code in allowed, (response.status_code, response.data[:400])
    if response.status_code == 400:  # the form with its messages, or the error page naming the reason
        reason_page = b'id="error-title"' in response.data and b"Something in that request was not right" not in response.data
        alert = b'role="alert"' in response.data  # a page re-rendered with its message (the dormant queue's bulk error)
        assert b'class="error"' in response.data or alert or reason_page, response.data[-1500:]


def seen_by_browser(location: str):
    """The redirect target as a browser resolves it: tabs and line breaks dropped, backslashes as slashes."""
    cleaned = "".join(ch for ch in location if ch not in "\t\r\n").replace("\\", "/")
    return urlsplit(cleaned)


def test_signup_fuzz_never_500_never_partial(client, make_user, reset_limits):
    make_user(email="taken@example.com")

    @fuzz(100)
    @given(email=emails, password=passwords, name=st.one_of(anything, long_text))
    def check(email, password, name):
        tried("form: signup")
        reset_limits()  # each case meets the view, not the sign-up limit
        client.post("/logout")
        before = table_counts(User, OutboxMessage, AuditLog)
        response = client.post("/signup", data={"email": email, "password": password, "name": name})
        assert_clean_answer(response, 302, 400)
        after = table_counts(User, OutboxMessage, AuditLog)
        if response.status_code == 302:  # the account and its welcome email, together
            assert after == {**before, "users": before["users"] + 1, "outbox": before["outbox"] + 1}
        else:
            assert after == before

    check()


def test_login_fuzz_never_500_never_writes_on_failure_never_leaves_the_site(client, make_user, reset_limits):
    make_user(email="ana@example.com")
    ana_variants = st.sampled_from(["ana@example.com", " ANA@example.com ", "Ana@Example.Com"])
    next_targets = st.one_of(st.none(), anything, st.sampled_from([
        "/billing", "//evil.example/x", "/\\evil.example", "/\t/evil.example", "https://evil.example/",
        "/\\/evil.example", " //evil.example", "/%2F/evil.example", "javascript:alert(1)"]))

    @fuzz(80)
    @given(email=st.one_of(ana_variants, emails), password=passwords, next_=next_targets)
    def check(email, password, next_):
        tried("form: login")
        reset_limits()
        client.post("/logout")
        before = table_rows(User, OutboxMessage, AuditLog)
        response = client.post("/login", data={"email": email, "password": password},
                               query_string={"next": next_} if next_ is not None else None)
        assert_clean_answer(response, 302, 400)
        genuine = email.strip().lower() == "ana@example.com" and password == PASSWORD
        assert (response.status_code == 302) == genuine
        if genuine:
            target = seen_by_browser(response.location)
            assert not target.scheme and not target.netloc, response.location
        else:
            assert table_rows(User, OutboxMessage, AuditLog) == before

    check()


NEXT_TARGETS = ["//evil.example/x", "/\\evil.example", "/\t/evil.example", "/\\/evil.example", "https://evil.example/",
                "/%2F/evil.example", "javascript:alert(1)", "/\r\n/evil.example", "\\\\evil.example"]


def test_signed_in_login_never_redirects_off_site(client, make_user):
    """`next` as browsers read it: backslashes count as slashes, tabs and line breaks are dropped."""
    make_user(email="ana@example.com")

    @fuzz(25)
    @given(next_=st.one_of(st.sampled_from(NEXT_TARGETS), st.text(st.sampled_from("/\\\t\r\n:.%2Fevil"), max_size=12)))
    def check(next_):
        tried("form: login ?next=")
        client.post("/logout")
        response = client.post("/login", data={"email": "ana@example.com", "password": PASSWORD},
                               query_string={"next": next_})
        assert response.status_code == 302
        target = seen_by_browser(response.location)
        assert not target.scheme and not target.netloc, response.location

    check()


def test_contact_fuzz_never_500_one_email_or_none(client, make_user, reset_limits):
    @fuzz(200)
    @given(name=st.one_of(anything, long_text), email=emails, subject=st.one_of(anything, long_text),
           message=st.one_of(anything, long_text, st.text(min_size=10, max_size=200)),
           submission=st.one_of(anything, st.text(min_size=60, max_size=100)),
           website=st.one_of(st.just(""), anything))
    def check(name, email, subject, message, submission, website):
        tried("form: contact")
        reset_limits()
        before = table_counts(OutboxMessage, User, AuditLog)
        response = client.post("/contact", data={"name": name, "email": email, "subject": subject,
                                                 "message": message, "submission": submission, "website": website})
        assert_clean_answer(response, 302, 400)
        after = table_counts(OutboxMessage, User, AuditLog)
        queued = after["outbox"] - before["outbox"]
        assert {**after, "outbox": before["outbox"]} == before
        if response.status_code == 302:
            assert queued in ((0,) if website else (0, 1))  # 0: the honeypot, or the same message again
        else:
            assert queued == 0

    check()


@pytest.fixture
def admin_world(make_user, auth):
    """A signed-in admin and a dormant queue: plain, exempted, protected by a subscription, purged."""
    admin = make_user(email="root@example.com", role="admin")
    auth.login("root@example.com")
    dormant = dict(last_seen_at=NOW - timedelta(days=250), inactive_warned_at=NOW - timedelta(days=35),
                   purge_due_at=NOW - timedelta(days=5))
    plain = make_user(email="carla@example.com", **dormant)
    exempted = make_user(email="elena@example.com", purge_exempt_reason="pilot", purge_exempt_at=NOW, **dormant)
    paying = make_user(email="dario@example.com", **dormant)
    add_subscription(paying.id, status="active")
    purged = make_user(email="purged-x@invalid", purged_at=NOW, **dormant)
    return admin, [plain.id, exempted.id, paying.id, purged.id]


def test_admin_actions_fuzz_never_500_all_or_nothing(client, admin_world, sent):
    _, ids = admin_world
    id_values = st.one_of(st.sampled_from([str(i) for i in ids]), st.integers().map(str),
                          st.integers(min_value=2**62).map(str), anything)
    actions = st.one_of(st.sampled_from(["exempt", "unexempt", "approve"]), anything)

    @fuzz(250)
    @given(action=actions, selected=st.lists(id_values, max_size=6), reason=st.one_of(anything, long_text),
           confirm=st.one_of(st.just("yes"), anything),
           back=st.one_of(st.just("/admin/dormant"), anything, anything.map(lambda t: "/admin/" + t)))
    def check(action, selected, reason, confirm, back):
        tried("form: admin dormant actions")
        before = table_rows(User, AuditLog)
        tasks_before = len(sent)
        response = client.post("/admin/dormant/act", data={"action": action, "ids": selected, "reason": reason,
                                                           "confirm": confirm, "back": back})
        assert_clean_answer(response, 200, 302, 400, 404)
        after = table_rows(User, AuditLog)
        if response.status_code != 302:  # refused, or the confirmation page: nothing written, nothing sent
            assert after == before and len(sent) == tasks_before
            return
        target = seen_by_browser(response.location)
        assert not target.scheme and not target.netloc, response.location
        chosen = {int(v) for v in selected if v.strip()} & set(ids[:3])  # the purged account is never touched
        changed = {b[0] for b, a in zip(before["users"], after["users"]) if a != b}
        assert changed <= chosen
        new_audit = after["audit_log"][len(before["audit_log"]):]
        assert sorted(int(row_subject(r)) for r in new_audit) == sorted(chosen)  # one audit row each, no more
        if action == "approve":
            assert len(sent) - tasks_before == len(changed)

    check()


def row_subject(row: tuple) -> str:
    from sqlalchemy import inspect

    return row[[c.key for c in inspect(AuditLog).column_attrs].index("subject_id")]
