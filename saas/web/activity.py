"""Activity tracking: last_seen_at, written at most once every few minutes per user."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask_login import current_user
from sqlalchemy import update

from saas.core.db import web_session
from saas.core.models import User
from saas.web.login import SignedInUser

WRITE_EVERY = timedelta(minutes=5)


def touch(user: User | SignedInUser, now: datetime | None = None) -> bool:
    """Record activity unless it was recorded within WRITE_EVERY; True when a write happened.
    The write is a Core UPDATE; `user.last_seen_at` is set to match."""
    now = now or datetime.now(UTC)
    if user.last_seen_at and now - user.last_seen_at < WRITE_EVERY:
        return False
    web_session.execute(update(User).where(User.id == user.id).values(last_seen_at=now))
    web_session.commit()
    user.last_seen_at = now
    return True


def init_app(app) -> None:
    @app.before_request
    def track_activity() -> None:
        if current_user.is_authenticated:
            touch(current_user._get_current_object())
