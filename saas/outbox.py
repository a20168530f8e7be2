"""The transactional outbox: every email is a row written in the caller's transaction."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, bindparam, event, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from saas.db import Base, utcnow
from saas.mail import render_email

log = logging.getLogger(__name__)
STATUSES = ("pending", "sending", "sent", "failed")
DELIVER_TASK = "scheduled.delivery.deliver_outbox"


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
    subject: Mapped[str] = mapped_column(Text)
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
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
        from email.utils import parseaddr

        from saas.settings import get_settings

        domain = parseaddr(get_settings().mail_from)[1].rpartition("@")[2] or "localhost"
        return f"<outbox-{self.id}@{domain}>"


def queue_email(
    session: Session,
    *,
    key: str,
    kind: str,
    to: str,
    template: str,
    context: dict[str, Any],
    user_id: int | None = None,
    reply_to: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> bool:
    """Render `templates/email/<template>` and add it to the outbox in the caller's transaction.

    Returns False when a row with the same idempotency key already exists (nothing is added).
    Delivery is enqueued after the transaction commits.
    """
    subject, text, html = render_email(template, context)
    stmt = (
        insert(OutboxMessage)
        .values(
            idempotency_key=key, kind=kind, to_addr=to, reply_to=reply_to, user_id=user_id,
            subject=subject, text_body=text, html_body=html, attachments=attachments or [],
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboxMessage.id)
    )
    added = session.execute(stmt).scalar_one_or_none() is not None
    if added:
        mark_outbox_dirty(session)
    return added


# The columns queue_batch sets per row; the others take their defaults.
_COLUMNS = {"idempotency_key": Text, "to_addr": Text, "user_id": BigInteger, "subject": Text, "text_body": Text,
            "html_body": Text}


def queue_batch(session: Session, *, kind: str, template: str, rows: list[dict[str, Any]]) -> int:
    """queue_email for a nightly job's batch: rows ({key, to, user_id, context}) rendered one by
    one through the same templates (Jinja escapes every value), then inserted as one
    INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, parsed and planned once whatever
    the batch's size. Returns how many were new."""
    if not rows:
        return 0
    columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
    for row in rows:
        subject, text, html = render_email(template, row["context"])
        for name, value in zip(_COLUMNS, (row["key"], row["to"], row.get("user_id"), subject, text, html)):
            columns[name].append(value)
    # One statement with one array parameter per column, unnested in SQL: the batch is parsed and
    # planned once, whatever its size (a VALUES list needs a parameter per cell).
    batch = func.unnest(*(bindparam(name, values, type_=ARRAY(_COLUMNS[name]))
                          for name, values in columns.items())).table_valued(*_COLUMNS).render_derived()
    table = OutboxMessage.__table__
    added = len(session.execute(
        insert(table)
        .from_select([*_COLUMNS, "kind"], select(*batch.c, literal(kind)))  # the other columns get their defaults
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    ).all())
    if added:
        mark_outbox_dirty(session)
    return added


def mark_outbox_dirty(session: Session) -> None:
    """Ask for a delivery run when this session commits (set-based inserts call this too)."""
    session.info["outbox_dirty"] = True


@event.listens_for(Session, "after_commit")
def _enqueue_delivery(session: Session) -> None:
    if not session.info.pop("outbox_dirty", False):
        return
    try:
        from scheduled.celery_app import app as celery_app

        celery_app.send_task(DELIVER_TASK)
    except Exception:  # the periodic sweep picks the rows up
        log.warning("could not enqueue outbox delivery; the sweep will send it", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_dirty(session: Session) -> None:
    session.info.pop("outbox_dirty", None)
