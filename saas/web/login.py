"""Who is signed in: Flask-Login's user loader, and the role check of /admin and /finance pages."""
from __future__ import annotations

from functools import wraps

from flask import abort
from flask_login import current_user
from sqlalchemy import select

from saas.core.db import web_session
from saas.core.models import User
from saas.web.extensions import login_manager


def load_user(token: str) -> User | None:
    """Sessions carry the account's session token, not its id: rotating the token ends them all."""
    return web_session.scalar(select(User).where(User.session_token == token, User.purged_at.is_(None)))


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
