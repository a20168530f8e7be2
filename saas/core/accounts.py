"""Accounts: password hashing, sign-up, sign-in, sessions, reset tokens. No Flask: the web layer
(saas.web.login) loads the signed-in user and checks roles."""
from __future__ import annotations

from datetime import UTC, date, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from saas.core.models import User, new_session_token
from saas.core.outbox import queue_email

RESET_MAX_AGE = 3600  # a reset link works for one hour
_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so timing reveals nothing.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


class SignupError(ValueError):
    """The sign-up cannot proceed; the message is safe to show."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Constant-work check: an unknown account costs the same as a wrong password."""
    try:
        return _hasher.verify(user.password_hash if user and user.password_hash else _DUMMY_HASH, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


TAKEN = "An account with this email already exists. Sign in or reset your password."


def create_user(session: Session, email: str, password: str, name: str = "", role: str = "subscriber") -> User:
    """Add a user; SignupError if the address is taken (also when a simultaneous sign-up took it
    first: the unique index decides, in a savepoint, so the caller's transaction goes on)."""
    if find_user(session, email) is not None:
        raise SignupError(TAKEN)
    user = User(email=email.strip().lower(), name=name.strip(), password_hash=hash_password(password), role=role)
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        raise SignupError(TAKEN) from None
    return user


def record_sign_in(session: Session, user: User, now: datetime | None = None) -> None:
    """Signing in is activity: it clears an inactivity warning and cancels a pending purge."""
    now = now or datetime.now(UTC)
    user.last_seen_at = now
    if user.inactive_warned_at is not None or user.purge_due_at is not None:
        user.inactive_warned_at = None
        user.purge_due_at = None
        user.purge_approved_at = None
        user.deletion_cancelled_at = now


def set_password(user: User, password: str) -> None:
    """New password; every other session of this user ends."""
    user.password_hash = hash_password(password)
    end_sessions(user)


def set_password_and_tell(session: Session, user: User, password: str, today: date) -> None:
    """`set_password`, and a "your password was changed" email in the same transaction (one per change: the
    key holds the new session token), so someone who did not make the change hears of it. `today`: in
    APP_TIMEZONE."""
    set_password(user, password)
    queue_email(session, key=f"password-changed:{user.id}:{user.session_token[:24]}", kind="password-changed",
                to=user.email, template="password_changed", user_id=user.id,
                context={"name": user.name or "", "changed_on": today.isoformat()})


def end_sessions(user: User) -> None:
    """Every session of this user stops working: sessions carry the token, not the user id."""
    user.session_token = new_session_token()


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="password-reset")


def make_reset_token(user: User, secret_key: str) -> str:
    """Signed, expiring, and tied to the current password hash, so it works once."""
    return _serializer(secret_key).dumps({"uid": user.id, "pw": (user.password_hash or "")[-16:]})


def user_for_reset_token(session: Session, token: str, secret_key: str, claim: bool = False) -> User | None:
    """The user a valid, unexpired, unused token names; None otherwise.

    With `claim`, the user's row stays locked until the transaction ends and is read after any
    concurrent use of the token committed: of simultaneous uses, one sets the password and the
    others find the token used (it is tied to the password hash)."""
    try:
        data = _serializer(secret_key).loads(token, max_age=RESET_MAX_AGE)
    except (SignatureExpired, BadSignature):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        return None
    user = session.get(User, data["uid"], with_for_update=claim, populate_existing=claim)
    if user is None or user.purged_at is not None or (user.password_hash or "")[-16:] != data.get("pw"):
        return None
    return user
