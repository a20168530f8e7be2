"""The transactional outbox: every email is a row written in the caller's transaction.

A row holds the email's template name and its context (JSON); the delivery task renders it
(`OutboxMessage.render`) just before sending. Queueing is an INSERT of a few short values, so a
request or a nightly batch pays no template rendering, and a template fix reaches the emails
still waiting.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import CTE, BigInteger, CheckConstraint, ColumnElement, ForeignKey, Index, Insert, Integer, Select, String, Text, event, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.selectable import ScalarSelect

from saas.db import Base, utcnow
from saas.mail import RenderedEmail, render_email, render_subject

log = logging.getLogger(__name__)
STATUSES = ("pending", "sending", "sent", "failed")
DELIVER_TASK = "scheduled.delivery.deliver_outbox"
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
        from email.utils import parseaddr

        from saas.settings import get_settings

        domain = parseaddr(get_settings().mail_from)[1].rpartition("@")[2] or "localhost"
        return f"<outbox-{self.id}@{domain}>"

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
    """Add an email (`templates/email/<template>` with `context`, JSON values only) to the outbox
    in the caller's transaction; it is rendered when delivered.

    Returns False when a row with the same idempotency key already exists (nothing is added).
    Delivery is enqueued after the transaction commits.
    """
    table = OutboxMessage.__table__  # a Core insert: the ORM's bulk-insert path costs a request ~0.5 ms
    stmt = (
        insert(table)
        .values(
            idempotency_key=key, kind=kind, to_addr=to, reply_to=reply_to, user_id=user_id,
            template=template, context=context, attachments=attachments or [],
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )
    added = session.execute(stmt).scalar_one_or_none() is not None
    if added:
        mark_outbox_dirty(session)
    return added


def queue_from(kind: str, template: str, rows: Select) -> Insert:
    """The set-based queue_email, for the nightly jobs: INSERT INTO outbox ... SELECT `rows` ON
    CONFLICT (idempotency_key) DO NOTHING RETURNING id.

    `rows` selects four columns, in this order: the idempotency key, the address, the user id and
    the template's context as JSONB (`json_object`), all built in SQL, so the emails of a batch
    never travel to Python and back. Execute the statement, or embed it as a CTE beside the
    UPDATE that makes the emails due (one statement, one round trip, `count_added` in its
    SELECT); then pass the count to note_added(session, ...).
    """
    source = rows.subquery("queued_rows")
    table = OutboxMessage.__table__
    now = utcnow()
    # Every column's value is given: inside a CTE, SQLAlchemy does not apply the Python defaults.
    fixed = {"kind": kind, "template": template, "attachments": literal([], JSONB), "status": "pending",
             "attempts": 0, "created_at": now, "next_attempt_at": now}
    return (
        insert(table)
        .from_select(["idempotency_key", "to_addr", "user_id", "context", *fixed],
                     select(*source.c, *(v if isinstance(v, ColumnElement) else literal(v) for v in fixed.values())))
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(table.c.id)
    )


def count_added(queued: CTE) -> ScalarSelect[int]:
    """How many rows a queue_from statement embedded as the CTE `queued` added, as a column."""
    return select(func.count()).select_from(queued).scalar_subquery()


def note_added(session: Session, added: int) -> int:
    """Ask for delivery at commit if a set-based insert added rows; returns `added`."""
    if added:
        mark_outbox_dirty(session)
    return added


def json_object(**values: Any) -> ColumnElement[Any]:
    """jsonb_build_object(name, value, ...) for a template context built in SQL (dates become
    ISO strings, as the template expects)."""
    pairs = [item for name, value in values.items() for item in (literal_column(f"'{name}'"), value)]
    return func.jsonb_build_object(*pairs, type_=JSONB)


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
