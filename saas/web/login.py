"""Who is signed in: Flask-Login's user loader, and the role check of /admin and /finance pages."""
from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user
from sqlalchemy import bindparam, select

from saas.core.db import web_session
from saas.core.models import User
from saas.web.extensions import login_manager

# Run on every signed-in request, so built once (see billing.current: a reused statement keeps
# its memoized cache key; one built per call is walked again to find its compiled form).
_USER_BY_SESSION_TOKEN = select(User).where(User.session_token == bindparam("token"), User.purged_at.is_(None))


def load_user(token: str) -> User | None:
    """Sessions carry the account's session token, not its id: rotating the token ends them all."""
    return web_session.scalar(_USER_BY_SESSION_TOKEN, {"token": token})


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
