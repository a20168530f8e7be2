"""Test data for the web tests: cards, subscriptions, invoices, and a SQL statement counter."""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import event

from saas.core.db import get_engine, session_scope

_ids = itertools.count(1)


def add_card(user_id: int, exp_month: int, exp_year: int, brand: str = "visa", last4: str = "4242",
             is_expiring: bool = False):
    from billing.models import Card

    with session_scope() as s:
        card = Card(user_id=user_id, stripe_payment_method_id=f"pm_test_{next(_ids)}", brand=brand, last4=last4,
                    exp_month=exp_month, exp_year=exp_year, is_expiring=is_expiring)
        s.add(card)
        s.flush()
        return card.id


def add_subscription(user_id: int, status: str = "active", plan: str = "pro", amount_cents: int = 2900):
    from billing.models import Subscription

    with session_scope() as s:
        sub = Subscription(user_id=user_id, stripe_subscription_id=f"sub_test_{next(_ids)}", plan=plan,
                           status=status, amount_cents=amount_cents)
        s.add(sub)
        s.flush()
        return sub.id


def add_invoice(user_id: int, amount_cents: int = 2900, status: str = "paid", paid_at: datetime | None = None):
    from billing.models import Invoice

    with session_scope() as s:
        inv = Invoice(user_id=user_id, stripe_invoice_id=f"in_test_{next(_ids)}", number=f"INV-{next(_ids):04d}",
                      amount_cents=amount_cents, status=status,
                      paid_at=paid_at or (datetime.now(UTC) if status == "paid" else None))
        s.add(inv)
        s.flush()
        return inv.id


@contextmanager
def count_queries():
    """Count the SQL statements the engine sends (BEGIN/COMMIT are not statements)."""
    statements: list[str] = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)
