"""Batch outbox inserts for the nightly jobs: render each row, insert the batch in one execute.

Rows are rendered one by one through the same templates as `queue_email` (Jinja escapes every
value for HTML, which a SQL string-replace template could not promise), then the whole batch goes
in as one INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING, in the batch's transaction.
The selection and every state change stay set-based SQL; only the rendering is per row, in memory.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Text, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session

from saas.mail import render_email
from saas.outbox import OutboxMessage, mark_outbox_dirty


def queue_batch(session: Session, *, kind: str, template: str, rows: list[dict[str, Any]]) -> int:
    """Insert one email per row ({key, to, user_id, context}); returns how many were new."""
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


_COLUMNS = {"idempotency_key": Text, "to_addr": Text, "user_id": BigInteger, "subject": Text, "text_body": Text,
            "html_body": Text}
