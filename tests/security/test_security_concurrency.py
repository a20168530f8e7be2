"""Simultaneous requests at a real multi-threaded server: a reset link works once, one address makes
one account, a signed-out cookie opens nothing, and ids too long for the database are 404s."""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from saas.core.db import session_scope
from saas.core.models import User
from saas.core.outbox import OutboxMessage
from saas.web.views.auth import LOGIN_LIMIT_PER_ACCOUNT, RESET_LIMIT_PER_ACCOUNT, SIGNUP_LIMIT_PER_IP
from saas.web.views.contact import CONTACT_LIMIT
from tests.helpers import PASSWORD

N = 10


def form_session(base: str, path: str) -> tuple[requests.Session, str]:
    """A browser-like session holding the form's CSRF token."""
    s = requests.Session()
    page = s.get(base + path, timeout=10).text
    return s, re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)


def all_at_once(calls) -> list[requests.Response]:
    """Run every call at the same moment (a barrier releases them together)."""
    barrier = threading.Barrier(len(calls))

    def fire(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(fire, calls))


def test_simultaneous_sign_ups_for_one_address_make_one_account_and_no_error(live_server, mail):
    forms = [form_session(live_server, "/signup") for _ in range(N)]
    responses = all_at_once([
        lambda s=s, token=token: s.post(live_server + "/signup", allow_redirects=False, timeout=30, data={
            "csrf_token": token, "email": "twin@example.com", "name": "Twin", "password": "correct-horse-42",
            "confirm": "correct-horse-42"})
        for s, token in forms])
    codes = sorted(r.status_code for r in responses)
    allowed = int(SIGNUP_LIMIT_PER_IP.split()[0])  # one address: the sign-up limit answers the rest
    assert codes == [302] + [400] * (allowed - 1) + [429] * (N - allowed), codes
    assert all("already exists" in r.text for r in responses if r.status_code == 400)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.email == "twin@example.com")) == 1


def test_thirty_simultaneous_sign_ins_to_one_account_check_at_most_the_limit(live_server, make_user):
    make_user(email="ana@example.com")
    forms = [form_session(live_server, "/login") for _ in range(30)]
    responses = all_at_once([
        lambda s=s, t=t, n=n: s.post(live_server + "/login", allow_redirects=False, timeout=60, data={
            "csrf_token": t, "email": "ana@example.com", "password": PASSWORD if n == 29 else f"wrong-{n}-password"})
        for n, (s, t) in enumerate(forms)])
    codes = [r.status_code for r in responses]
    limit = int(LOGIN_LIMIT_PER_ACCOUNT.split()[0])
    assert codes.count(429) >= 30 - limit and len(codes) - codes.count(429) <= limit, codes


def test_twenty_simultaneous_contact_posts_from_one_address_send_one(live_server, mail):
    assert CONTACT_LIMIT == "1 per 10 seconds"
    forms = [form_session(live_server, "/contact") for _ in range(20)]
    responses = all_at_once([
        lambda s=s, t=t, n=n: s.post(live_server + "/contact", allow_redirects=False, timeout=60, data={
            "csrf_token": t, "name": "Vi", "email": "vi@example.com", "subject": f"Hello {n}",
            "message": "A question about my plan.", "submission": f"sub-{n}", "website": ""})
        for n, (s, t) in enumerate(forms)])
    codes = sorted(r.status_code for r in responses)
    assert codes == [302] + [429] * 19, codes
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "contact")) == 1


def test_ten_simultaneous_reset_requests_for_one_account_send_at_most_the_limit(live_server, make_user, mail):
    make_user(email="ana@example.com")
    forms = [form_session(live_server, "/password/forgot") for _ in range(N)]
    responses = all_at_once([
        lambda s=s, t=t: s.post(live_server + "/password/forgot", allow_redirects=False, timeout=60,
                                data={"csrf_token": t, "email": "ana@example.com"})
        for s, t in forms])
    limit = int(RESET_LIMIT_PER_ACCOUNT.split()[0])
    assert sorted(r.status_code for r in responses) == [302] * limit + [429] * (N - limit)
    with session_scope() as s:  # links made in the same second are one email (same outbox key)
        assert 1 <= s.scalar(select(func.count()).select_from(OutboxMessage)
                             .where(OutboxMessage.kind == "password-reset")) <= limit


def test_a_reset_link_used_ten_times_at_once_sets_the_password_once(settings, live_server, make_user, mail, app):
    from saas.core.accounts import make_reset_token

    user = make_user(email="ana@example.com")
    with app.app_context(), session_scope() as s:
        token = make_reset_token(s.get(User, user.id), settings.secret_key)
    path = f"/password/reset/{token}"
    forms = [form_session(live_server, path) for _ in range(N)]
    responses = all_at_once([
        lambda s=s, t=t, n=n: s.post(live_server + path, allow_redirects=False, timeout=30, data={
            "csrf_token": t, "password": f"new-password-{n:02d}x", "confirm": f"new-password-{n:02d}x"})
        for n, (s, t) in enumerate(forms)])
    to = [r.headers.get("Location", "") for r in responses]
    assert sum(loc.endswith("/dashboard") for loc in to) == 1, to
    assert sum(loc.endswith("/password/forgot") for loc in to) == N - 1, to


def test_a_cookie_copied_before_sign_out_opens_nothing_after_it(live_server, make_user):
    make_user(email="ana@example.com")
    s, token = form_session(live_server, "/login")
    assert s.post(live_server + "/login", data={"csrf_token": token, "email": "ana@example.com",
                                                "password": PASSWORD}, allow_redirects=False).status_code == 302
    copy = requests.Session()
    copy.cookies.update(s.cookies)
    assert copy.get(live_server + "/dashboard", allow_redirects=False).status_code == 200
    page = s.get(live_server + "/dashboard").text
    logout_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert s.post(live_server + "/logout", data={"csrf_token": logout_token}, allow_redirects=False).status_code == 302
    after = copy.get(live_server + "/dashboard", allow_redirects=False)
    assert after.status_code == 302 and "/login" in after.headers["Location"]


def test_sign_in_starts_a_new_session_with_a_new_csrf_secret(csrf_app, make_user):
    make_user(email="ana@example.com")
    client = csrf_app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    with client.session_transaction() as sess:
        before = sess["csrf_token"]
    assert client.post("/login", data={"csrf_token": token, "email": "ana@example.com",
                                       "password": PASSWORD}).status_code == 302
    client.get("/dashboard")
    with client.session_transaction() as sess:
        assert sess["csrf_token"] != before


def test_ids_beyond_the_database_are_404_and_a_bad_audit_cursor_is_400(client, make_user, auth):
    make_user(email="root@example.com", role="admin")
    make_user(email="fin@example.com", role="finance")
    huge = "9" * 25
    auth.login("fin@example.com")
    for path in (f"/finance/reports/{huge}/status", f"/finance/reports/{huge}/events",
                 f"/finance/reports/{huge}.csv", f"/finance/summaries/{huge}.csv"):
        assert client.get(path).status_code == 404, path
    auth.logout()
    auth.login("root@example.com")
    assert client.post(f"/admin/outbox/{huge}/retry").status_code == 404
    response = client.get(f"/admin/audit?before={huge}")
    assert response.status_code == 400 and b"before must be" in response.data
