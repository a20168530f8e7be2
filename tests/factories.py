"""The suite's one set of test data: committed database rows, and Stripe-shaped objects.

A module of plain functions rather than factory_boy: each row is committed in its own short
session and returned detached (what the workers, the live server and the jobs under test need to
see), which is one `add()` here and a session-persistence strategy plus a Meta class per model
there. Fixtures in tests/conftest.py hand these to tests (`make_user`, `card`, `subscription`,
`invoice`, `add`).
"""
from __future__ import annotations

import itertools
from typing import Any

from billing import gateway, records, subscriptions
from billing.expiry import ExpiryWindow
from billing.models import Card, Invoice, Subscription
from saas.core.accounts import hash_password
from saas.core.db import session_scope
from saas.core.models import User
from tests.helpers import PASSWORD

_ids = itertools.count(1)
_password_hash: list[str] = []


def add(model: type, **columns: Any) -> Any:
    """Insert one committed row of `model` and return it detached."""
    with session_scope() as s:
        row = model(**columns)
        s.add(row)
        s.flush()
        s.refresh(row)
        s.expunge(row)
    return row


def user(email: str | None = None, role: str = "subscriber", **columns: Any) -> User:
    """A committed user whose password is tests.helpers.PASSWORD."""
    if not _password_hash:
        _password_hash.append(hash_password(PASSWORD))  # argon2 is slow: hash once per session
    n = next(_ids)
    return add(User, email=email or f"user{n}@example.com", role=role, password_hash=_password_hash[0],
               name=columns.pop("name", "Test User"), **columns)


def card(user_id: int, exp_month: int, exp_year: int, **columns: Any) -> Card:
    n = next(_ids)
    return add(Card, user_id=user_id, stripe_payment_method_id=f"pm_{n}", brand="visa",
               last4=f"{n % 10000:04d}", exp_month=exp_month, exp_year=exp_year, **columns)


def subscription(user_id: int, status: str = "active", amount_cents: int = 1000, **columns: Any) -> Subscription:
    return add(Subscription, user_id=user_id, stripe_subscription_id=f"sub_{next(_ids)}", plan="pro",
               status=status, amount_cents=amount_cents, **columns)


def invoice(user_id: int | None, status: str = "paid", amount_cents: int = 1000, **columns: Any) -> Invoice:
    return add(Invoice, user_id=user_id, stripe_invoice_id=f"in_{next(_ids)}", status=status,
               amount_cents=amount_cents, **columns)


# Stripe-shaped objects, as webhooks and the API carry them ---------------------------------------



def stripe_event(type_: str, obj: dict, created: int, event_id: str | None = None) -> dict:
    return {"id": event_id or f"evt_{type_.replace('.', '_')}_{created}_{obj.get('id', '')}", "object": "event",
            "type": type_, "created": created, "data": {"object": obj}, "livemode": False}


def stripe_subscription(sub_id: str, customer: str, status: str = "active", amount: int = 2900, interval: str = "month",
                 cancel_at_period_end: bool = False, price: str = "price_pro_monthly") -> dict:
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": status, "currency": "usd",
            "cancel_at_period_end": cancel_at_period_end, "canceled_at": None,
            "items": {"data": [{"price": {"id": price, "unit_amount": amount, "currency": "usd",
                                          "recurring": {"interval": interval}},
                                "quantity": 1, "current_period_end": 1_900_000_000}]}}


def stripe_invoice(invoice_id: str, customer: str, sub_id: str, status: str, amount: int = 2900) -> dict:
    return {"id": invoice_id, "object": "invoice", "customer": customer, "status": status, "amount_due": amount,
            "currency": "usd", "number": "T-1", "attempt_count": 1,
            "parent": {"subscription_details": {"subscription": sub_id}},
            "status_transitions": {"paid_at": 1_800_000_000 if status == "paid" else None}}


def stripe_card(pm_id: str, customer: str | None, exp_month: int, exp_year: int, last4: str = "4242") -> dict:
    return {"id": pm_id, "object": "payment_method", "type": "card", "customer": customer,
            "card": {"brand": "visa", "last4": last4, "exp_month": exp_month, "exp_year": exp_year}}


def stripe_subscriber(today, email: str | None = None, number: str = "4242424242424242",
                      plan: str | None = "pro") -> User:
    """A committed user with a customer and a default card in the Stripe emulator (and our card row),
    subscribed to `plan` through the product's own subscribe (None: not subscribed)."""
    row = user(email=email)
    tag = f"{row.id}-{next(_ids)}"
    with session_scope() as s:
        account = s.get_one(User, row.id)
        customer_id = subscriptions.ensure_customer(s, account)
        pm = gateway.create_card_payment_method(number, 12, today.year + 3, f"factory-{tag}")
        pm = gateway.attach_payment_method(pm["id"], customer_id)
        gateway.set_default_payment_method(customer_id, pm["id"])
        records.upsert_card(s, account.id, pm, ExpiryWindow(today, 30))
        if plan:
            subscriptions.subscribe(s, account, plan, f"factory-{tag}")
        s.flush()
        s.refresh(account)
        s.expunge(account)
    return account
