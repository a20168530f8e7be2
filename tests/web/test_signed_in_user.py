"""The signed-in user is the account's row read at the start of the request; changes go through the ORM account."""
from __future__ import annotations

from flask import request
from flask_login import current_user, login_user
from sqlalchemy import select, update

from saas.core.db import session_scope, web_session
from saas.core.models import User
from saas.web.login import SignedInUser, load_user, signed_in_account
from tests.helpers import PASSWORD


def test_pages_see_the_account_as_a_row_and_load_no_orm_object(app, client, make_user):
    make_user(email="ana@example.com", name="Ana", role="subscriber")
    seen = []

    @app.after_request
    def look(response):
        if request.path == "/dashboard":
            seen.append((current_user._get_current_object(), list(web_session.identity_map.values())))
        return response

    assert client.post("/login", data={"email": "ana@example.com", "password": PASSWORD}).status_code == 302
    page = client.get("/dashboard")
    assert page.status_code == 200 and b"Hello, Ana" in page.data and b"ana@example.com" in page.data
    (user, loaded), = seen
    assert isinstance(user, SignedInUser) and (user.email, user.role, user.is_active) == ("ana@example.com", "subscriber", True)
    assert loaded == []  # nothing in the session's identity map: no ORM object was built for the page


def test_a_purged_or_unknown_token_signs_nobody_in(app, make_user):
    user = make_user(email="ana@example.com")
    with app.test_request_context():
        assert load_user(user.session_token).id == user.id
        assert load_user("no-such-token") is None
        with session_scope() as s:
            s.execute(update(User).where(User.id == user.id).values(purged_at=User.created_at))
        assert load_user(user.session_token) is None
        web_session.remove()


def test_the_account_to_change_is_the_orm_row_and_none_once_its_sessions_ended(app, make_user):
    user = make_user(email="ana@example.com")
    with app.test_request_context():
        login_user(load_user(user.session_token))
        account = signed_in_account()
        assert isinstance(account, User) and account.id == user.id and account in web_session
        web_session.remove()
    with app.test_request_context():
        login_user(load_user(user.session_token))
        with session_scope() as s:  # another request signs the account out meanwhile
            s.execute(update(User).where(User.id == user.id).values(session_token="rotated"))
        assert signed_in_account() is None
        web_session.remove()
    with session_scope() as s:
        assert s.scalar(select(User.session_token).where(User.id == user.id)) == "rotated"
