"""Helpers for the scheduled-jobs tests: billing rows, settings variants, a Redis client."""
from __future__ import annotations

from datetime import datetime

import pytest


@pytest.fixture
def redis_client(services):
    import redis

    return redis.Redis.from_url(services["redis_url"])


@pytest.fixture
def ctx(settings):
    """A RunContext for calling a job's domain function directly."""
    from scheduled.ledger import RunContext

    def factory(job: str, slot: datetime, now: datetime | None = None, **kwargs):
        return RunContext(job=job, slot=slot, now=now or slot, settings=kwargs.pop("settings", settings), **kwargs)

    return factory


@pytest.fixture
def outbox_keys(services):
    def read(kind: str | None = None) -> list[str]:
        from sqlalchemy import select

        from saas.core.db import session_scope
        from saas.core.outbox import OutboxMessage

        with session_scope() as s:
            stmt = select(OutboxMessage.idempotency_key).order_by(OutboxMessage.id)
            if kind:
                stmt = stmt.where(OutboxMessage.kind == kind)
            return list(s.scalars(stmt))

    return read
