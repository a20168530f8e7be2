"""Receiving Stripe webhooks: verify against every configured secret, then store by event id."""
from __future__ import annotations

import json
import time
from typing import Any

import stripe
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.models import Card, Invoice, StripeEvent, Subscription

TOLERANCE = 300  # seconds, both ways: Stripe's library only refuses old timestamps


class WebhookRejected(Exception):
    """The request is not a genuine, fresh Stripe event; the message says why (answered with 400)."""


def _timestamp(header: str) -> int:
    """The header's timestamp exactly as stripe-python reads it (the same parser its verify_header
    uses), so the future check below judges the timestamp that the signature covers."""
    try:
        return stripe.WebhookSignature._get_timestamp_and_signatures(header, stripe.WebhookSignature.EXPECTED_SCHEME)[0]
    except (IndexError, ValueError):
        raise WebhookRejected("malformed Stripe-Signature header") from None


def verify(payload: bytes, header: str | None, secrets: tuple[str, ...], now: float | None = None) -> dict[str, Any]:
    """The event as a dict, if `header` signs `payload` with one of `secrets` within 5 minutes of now."""
    if not secrets:
        raise WebhookRejected("no webhook secret is configured")
    if not header:
        raise WebhookRejected("missing Stripe-Signature header")
    now = time.time() if now is None else now
    timestamp = _timestamp(header)
    if timestamp > now + TOLERANCE:
        raise WebhookRejected("timestamp is more than 5 minutes in the future")
    if timestamp < now - TOLERANCE:
        raise WebhookRejected("timestamp is more than 5 minutes old")
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
    except UnicodeDecodeError:
        raise WebhookRejected("body is not a JSON Stripe event") from None
    for secret in secrets:
        try:  # the signature only: stripe's own parsing fails with a 500 on a signed `null` or `[]`
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=TOLERANCE)
        except stripe.SignatureVerificationError:
            continue
        break
    else:
        raise WebhookRejected("signature does not match any configured webhook secret")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):  # signed, but not JSON
        raise WebhookRejected("body is not a JSON Stripe event") from None
    if not isinstance(event, dict) or not all(isinstance(event.get(k), t) and not isinstance(event.get(k), bool)
                                               for k, t in (("id", str), ("type", str), ("created", int),
                                                            ("data", dict))):
        raise WebhookRejected("body is not a Stripe event (id, type, created, data)")
    try:
        problem = _unstorable(event, "")
    except RecursionError:
        problem = "body is nested too deeply"
    if problem is None:
        problem = _too_long(event)
    if problem is not None:
        raise WebhookRejected(problem)
    return event


BIGINT = 2**63 - 1


def _unstorable(value: Any, path: str) -> str | None:
    """Why the value cannot be stored (JSONB) or mirrored (BIGINT columns), or None: a NUL, an unpaired
    surrogate (`"\\ud800"` parses, but is no text PostgreSQL can store), a whole number beyond a
    64-bit integer, a number that is not finite."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"body contains a NUL character ({path or 'top level'})"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"body contains an unpaired surrogate ({path or 'top level'})"
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"{path} is out of range" if not -BIGINT - 1 <= value <= BIGINT else None
    if isinstance(value, float):
        return f"{path} is out of range" if value != value or value in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key, path) or _unstorable(item, f"{path}.{key}" if path else key)
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unstorable(item, f"{path}[{index}]")
            if problem:
                return problem
    return None


def _limit(column: Any) -> int:
    return column.type.length


# The fields we copy into columns of a limited length, per object: (path in the object, column).
FITTED: dict[str, list[tuple[str, Any]]] = {
    "invoice": [("id", Invoice.stripe_invoice_id), ("number", Invoice.number), ("currency", Invoice.currency),
                ("status", Invoice.status), ("customer_email", Invoice.customer_email),
                ("customer_name", Invoice.customer_name)],
    "subscription": [("id", Subscription.stripe_subscription_id), ("status", Subscription.status),
                     ("currency", Subscription.currency)],
    "payment_method": [("id", Card.stripe_payment_method_id), ("card.brand", Card.brand),
                       ("card.last4", Card.last4)],
}


def _too_long(event: dict[str, Any]) -> str | None:
    """The first field too long for the column that keeps it, said as `field exceeds N characters`."""
    for name, column in (("id", StripeEvent.id), ("type", StripeEvent.type)):
        if len(event[name]) > _limit(column):
            return f"{name} exceeds {_limit(column)} characters"
    obj = event["data"].get("object")
    if not isinstance(obj, dict):
        return None
    for path, column in FITTED.get(obj.get("object") or "", []):
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and len(value) > _limit(column):
            return f"data.object.{path} exceeds {_limit(column)} characters"
        if value is not None and not isinstance(value, str):
            return f"data.object.{path} is not a string"
    return None


def store_event(session: Session, event: dict[str, Any]) -> bool:
    """Keep the event by id; False when it was already stored (a replay)."""
    stmt = (insert(StripeEvent)
            .values(id=event["id"], type=event["type"], created=event["created"], payload=event)
            .on_conflict_do_nothing(index_elements=["id"]).returning(StripeEvent.id))
    return session.execute(stmt).scalar_one_or_none() is not None
