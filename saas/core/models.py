"""Users, their activity and dormancy state, and the audit log."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from saas.core.db import Base, utcnow

ROLES = ("subscriber", "admin", "finance")


def new_session_token() -> str:
    """A fresh token; rotating it signs the user out everywhere."""
    return secrets.token_urlsafe(24)


class User(Base):
    """A person who signs in. Dormancy columns are written by the nightly jobs."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES}", name="role"),
        Index("ix_users_last_seen_at", "last_seen_at"),
        Index("ix_users_purge_due_at", "purge_due_at", postgresql_where="purge_due_at IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20), default="subscriber")
    session_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_session_token)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Customer credit we owe (Stripe's negative balance), in cents; a credit protects from purge.
    credit_balance_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    # Dormancy: warned -> purge due; an admin may exempt; signing in clears the warning.
    inactive_warned_at: Mapped[datetime | None]
    purge_due_at: Mapped[datetime | None]
    deletion_cancelled_at: Mapped[datetime | None]
    purge_exempt_reason: Mapped[str | None] = mapped_column(Text)
    purge_exempt_at: Mapped[datetime | None]
    purge_exempt_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    purge_approved_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]

    # Flask-Login protocol: the session stores the token, not the id.
    is_active = property(lambda self: self.purged_at is None)
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.session_token

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class AuditLog(Base):
    """Who did what to which object, and why. Never personal data."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(100))  # "admin:3", "job:purge-dormant-accounts"
    action: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
