"""Receiving Stripe webhooks: verify against every configured secret, then store by event id."""
from __future__ import annotations

import json
import time
from typing import Any

import stripe
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from billing.models import StripeEvent

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
    except ValueError:  # signed, but not JSON
        raise WebhookRejected("body is not a JSON Stripe event") from None
    if not isinstance(event, dict) or not all(isinstance(event.get(k), t) and not isinstance(event.get(k), bool)
                                               for k, t in (("id", str), ("type", str), ("created", int),
                                                            ("data", dict))):
        raise WebhookRejected("body is not a Stripe event (id, type, created, data)")
    if _has_nul(event):  # PostgreSQL cannot store U+0000 in JSONB
        raise WebhookRejected("body contains a NUL character")
    return event


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def store_event(session: Session, event: dict[str, Any]) -> bool:
    """Keep the event by id; False when it was already stored (a replay)."""
    stmt = (insert(StripeEvent)
            .values(id=event["id"], type=event["type"], created=event["created"], payload=event)
            .on_conflict_do_nothing(index_elements=["id"]).returning(StripeEvent.id))
    return session.execute(stmt).scalar_one_or_none() is not None
