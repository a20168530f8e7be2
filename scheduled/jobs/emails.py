"""Batch outbox inserts for the nightly jobs: render each row, insert the batch in one statement.

Rows are rendered one by one through the same templates as `queue_email` (Jinja escapes every
value for HTML, which a SQL string-replace template could not promise), then the whole batch goes
in as one multi-row INSERT ... ON CONFLICT DO NOTHING, in the batch's transaction. The selection
and every state change stay set-based SQL; only the rendering is per row, in memory.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from saas.mail import render_email
from saas.outbox import OutboxMessage, mark_outbox_dirty


def queue_batch(session: Session, *, kind: str, template: str, rows: list[dict[str, Any]]) -> int:
    """Insert one email per row ({key, to, user_id, context}); returns how many were new."""
    if not rows:
        return 0
    values = []
    for row in rows:
        subject, text, html = render_email(template, row["context"])
        values.append({"idempotency_key": row["key"], "kind": kind, "to_addr": row["to"],
                       "user_id": row.get("user_id"), "subject": subject, "text_body": text,
                       "html_body": html, "attachments": []})
    added = len(session.execute(
        insert(OutboxMessage).values(values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(OutboxMessage.id)
    ).all())
    if added:
        mark_outbox_dirty(session)
    return added
