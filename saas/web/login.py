"""Who is signed in: Flask-Login's user loader, the account behind it, and the role check of /admin and /finance pages."""
from __future__ import annotations

from functools import wraps
from typing import Any

from flask import abort
from flask_login import current_user
from sqlalchemy import bindparam, select

from saas.core.db import web_session
from saas.core.models import User
from saas.web.extensions import login_manager

_COLUMNS = tuple(User.__table__.columns)
_KEYS = tuple(column.key for column in _COLUMNS)


class SignedInUser:
    """The signed-in account's row as it was read at the start of the request: what Flask-Login
    gives every page as `current_user` (ids, name, email, role, the dormancy dates).

    A row, not an ORM object: loading the account through the ORM (an identity-map entry,
    instance state, instrumented attributes) cost the dashboard about a tenth of its CPU time on
    every signed-in request, more than the SELECT itself (docs/benchmarks.md, issue 18). Setting
    an attribute here changes nothing in the database; code that changes the account loads it
    with `signed_in_account()` and commits through the session.
    """

    __slots__ = _KEYS
    is_authenticated = True
    is_anonymous = False

    def __init__(self, row: Any) -> None:
        for key, value in zip(_KEYS, row, strict=True):
            setattr(self, key, value)

    @property
    def is_active(self) -> bool:
        return self.purged_at is None

    def get_id(self) -> str:
        return self.session_token

    def __repr__(self) -> str:
        return f"<SignedInUser {self.id} {self.role}>"


# Run on every signed-in request, so built once (see billing.current: a reused statement keeps
# its memoized cache key; one built per call is walked again to find its compiled form). Core
# columns, so the result is plain rows (SignedInUser above).
_USER_BY_SESSION_TOKEN = select(*_COLUMNS).where(User.session_token == bindparam("token"), User.purged_at.is_(None))


def load_user(token: str) -> SignedInUser | None:
    """Sessions carry the account's session token, not its id: rotating the token ends them all.
    Read on the request's session connection, in the request's transaction."""
    row = web_session.connection().execute(_USER_BY_SESSION_TOKEN, {"token": token}).first()
    return None if row is None else SignedInUser(row)


def signed_in_account() -> User | None:
    """The signed-in account as an ORM object in the request's session, for code that changes it
    (a new password, the sessions ended); None when its sessions ended since the request began."""
    return web_session.scalar(select(User).where(User.id == current_user.id,
                                                 User.session_token == current_user.session_token))


def role_required(*roles: str):
    """Anonymous users go to the login page; signed-in users without the role get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def init_app(app) -> None:
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
