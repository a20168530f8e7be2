"""Helpers for the scheduled-jobs tests: billing rows, settings variants, a Redis client."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

_ids = itertools.count(1)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def redis_client(services):
    import redis

    return redis.Redis.from_url(services["redis_url"])


@pytest.fixture
def add(services):
    """Insert committed rows: add(Model, **columns) -> the row (detached)."""
    from saas.core.db import session_scope

    def factory(model, **columns):
        with session_scope() as s:
            row = model(**columns)
            s.add(row)
            s.flush()
            s.refresh(row)
            s.expunge(row)
        return row

    return factory


@pytest.fixture
def card(add):
    def factory(user_id: int, exp_month: int, exp_year: int, **columns):
        from billing.models import Card

        n = next(_ids)
        return add(Card, user_id=user_id, stripe_payment_method_id=f"pm_{n}", brand="visa",
                   last4=f"{n % 10000:04d}", exp_month=exp_month, exp_year=exp_year, **columns)

    return factory


@pytest.fixture
def subscription(add):
    def factory(user_id: int, status: str = "active", amount_cents: int = 1000, **columns):
        from billing.models import Subscription

        return add(Subscription, user_id=user_id, stripe_subscription_id=f"sub_{next(_ids)}", plan="pro",
                   status=status, amount_cents=amount_cents, **columns)

    return factory


@pytest.fixture
def invoice(add):
    def factory(user_id: int | None, status: str = "paid", amount_cents: int = 1000, **columns):
        from billing.models import Invoice

        return add(Invoice, user_id=user_id, stripe_invoice_id=f"in_{next(_ids)}", status=status,
                   amount_cents=amount_cents, **columns)

    return factory


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
