"""The state of a slow billing operation a page is waiting for, kept briefly in Redis."""
from __future__ import annotations

import json
import secrets
from typing import Any

from saas.core import redis_client

TTL = 3600


def new_operation(user_id: int, kind: str) -> str:
    """A fresh operation id (also the attempt part of its Stripe idempotency keys), marked pending."""
    op_id = secrets.token_urlsafe(12)
    set_state(op_id, user_id=user_id, kind=kind, state="pending")
    return op_id


def set_state(op_id: str, **fields: Any) -> None:
    key = f"billing:op:{op_id}"
    current = json.loads(redis_client.get().get(key) or "{}")  # type: ignore[arg-type]  # a sync client: bytes
    redis_client.get().set(key, json.dumps({**current, **fields}), ex=TTL)


def finish(op_id: str, message: str, next_url: str | None = None, ok: bool = True) -> None:
    set_state(op_id, state="done" if ok else "failed", message=message, next=next_url)


def get_state(op_id: str) -> dict[str, Any] | None:
    raw = redis_client.get().get(f"billing:op:{op_id}")
    return json.loads(raw) if raw else None  # type: ignore[arg-type]  # a sync client: bytes


def link(op_id: str, ref: str) -> None:
    """Remember that Stripe object `ref` (a Checkout session's SetupIntent) belongs to operation `op_id`."""
    redis_client.get().set(f"billing:op-for:{ref}", op_id, ex=TTL)


def operation_for(ref: str) -> str | None:
    raw = redis_client.get().get(f"billing:op-for:{ref}") if ref else None
    return raw.decode() if isinstance(raw, bytes) else raw  # type: ignore[return-value]
