"""The outbox table: one row per email, holding its template and context until it is sent."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from saas.core.db import Base, utcnow
from saas.core.mail import RenderedEmail, message_domain, render_email, render_subject

STATUSES = ("pending", "sending", "sent", "failed")
# The template of a message stored already rendered ({"subject", "text", "html"} as its context):
# rows queued before migration 0003, and the redacted rows of purged accounts.
PRERENDERED = "_prerendered"


class OutboxMessage(Base):
    """One email to send, at most once, identified by its idempotency key."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES}", name="status"),
        Index("ix_outbox_due", "next_attempt_at", postgresql_where="status IN ('pending', 'sending')"),
        Index("ix_outbox_kind_created", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    to_addr: Mapped[str] = mapped_column(Text)
    reply_to: Mapped[str | None] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(100))  # templates/email/<template>.{subject.txt,txt,html}
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # [{"filename": ..., "content_type": ..., "content": <text>}]
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))  # the delivery task's id
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)

    @property
    def message_id(self) -> str:
        """Derived from the row, so a resend after a crash carries the same Message-ID."""
        return f"<outbox-{self.id}@{message_domain()}>"

    @property
    def subject(self) -> str:
        """The rendered subject line, for lists; the error's name when the row cannot render."""
        try:
            return render_subject(self.template, self.context)
        except TemplateError as exc:
            return f"[cannot render: {type(exc).__name__}]"

    def render(self) -> RenderedEmail:
        """Subject, text and HTML from the row's template and context (raises jinja2.TemplateError)."""
        return render_email(self.template, self.context)
