"""Signed webhook requests and polling, shared by the billing tests."""
from __future__ import annotations

import json
import time

import stripe

SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


def signed(event: dict, secret: str = SECRET, timestamp: int | None = None) -> tuple[str, dict]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}


def event(type_: str, obj: dict, created: int, event_id: str | None = None) -> dict:
    return {"id": event_id or f"evt_{type_.replace('.', '_')}_{created}_{obj.get('id', '')}", "object": "event",
            "type": type_, "created": created, "data": {"object": obj}, "livemode": False}


def subscription(sub_id: str, customer: str, status: str = "active", amount: int = 2900, interval: str = "month",
                 cancel_at_period_end: bool = False, price: str = "price_pro_monthly") -> dict:
    return {"id": sub_id, "object": "subscription", "customer": customer, "status": status, "currency": "usd",
            "cancel_at_period_end": cancel_at_period_end, "canceled_at": None,
            "items": {"data": [{"price": {"id": price, "unit_amount": amount, "currency": "usd",
                                          "recurring": {"interval": interval}},
                                "quantity": 1, "current_period_end": 1_900_000_000}]}}


def invoice(invoice_id: str, customer: str, sub_id: str, status: str, amount: int = 2900) -> dict:
    return {"id": invoice_id, "object": "invoice", "customer": customer, "status": status, "amount_due": amount,
            "currency": "usd", "number": "T-1", "attempt_count": 1,
            "parent": {"subscription_details": {"subscription": sub_id}},
            "status_transitions": {"paid_at": 1_800_000_000 if status == "paid" else None}}


def card(pm_id: str, customer: str | None, exp_month: int, exp_year: int, last4: str = "4242") -> dict:
    return {"id": pm_id, "object": "payment_method", "type": "card", "customer": customer,
            "card": {"brand": "visa", "last4": last4, "exp_month": exp_month, "exp_year": exp_year}}


def wait_until(check, what: str, timeout: float = 30.0):
    """Poll `check` until it returns something truthy (effects of workers and webhooks are asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")
