"""The transactional outbox: every email is a row written in the caller's transaction.

A row holds the email's template name and its context (JSON); the delivery task renders it
(`OutboxMessage.render`) just before sending. Queueing is an INSERT of a few short values, so a
request or a nightly batch pays no template rendering, and a template fix reaches the emails
still waiting.
"""
from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CTE, ColumnElement, Insert, Select, Table, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ScalarSelect

from saas.core.db import utcnow
from saas.core.outbox.delivery import deliver_outbox
from saas.core.outbox.models import PRERENDERED, STATUSES, OutboxMessage
from saas.core.queue import enqueue_after_commit

__all__ = ["PRERENDERED", "STATUSES", "OutboxMessage", "count_added", "json_object", "mark_outbox_dirty",
           "note_added", "queue_email", "queue_from"]

_TABLE = cast(Table, OutboxMessage.__table__)
# queue_email's statement, built once: a Core insert (the ORM's bulk-insert path cost a request
# ~0.5 ms), the row's values given at execution (Core fills in the columns' defaults: status,
# attempts, the times). One statement object for every call keeps its memoized cache key, so a
# request neither builds the statement nor walks it to find its compiled SQL.
_INSERT_ONE = (insert(_TABLE).on_conflict_do_nothing(index_elements=["idempotency_key"])
               .returning(_TABLE.c.id))


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
    values = {"idempotency_key": key, "kind": kind, "to_addr": to, "reply_to": reply_to, "user_id": user_id,
              "template": template, "context": context, "attachments": attachments or []}
    added = session.connection().execute(_INSERT_ONE, values).scalar_one_or_none() is not None
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
    table = cast(Table, OutboxMessage.__table__)
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
    pairs: list[Any] = []
    for name, value in values.items():
        pairs += [literal_column(f"'{name}'"), value]
    return func.jsonb_build_object(*pairs, type_=JSONB)


def mark_outbox_dirty(session: Session) -> None:
    """Ask for a delivery run when this session commits (set-based inserts call this too)."""
    enqueue_after_commit(session, deliver_outbox)
