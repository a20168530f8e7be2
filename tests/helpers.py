"""Small helpers every test module may use: instants, waiting, signed webhooks, the suite's secrets."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import stripe

PASSWORD = "correct-horse-42"  # every user tests.factories.user() makes
SECRET_KEY = "test-secret-key-0123456789"  # the suite's SECRET_KEY (tests/conftest.py sets it)
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def signed(event: dict, secret: str = SECRET, timestamp: int | None = None) -> tuple[str, dict]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}


def wait_until(check, what: str, timeout: float = 30.0):
    """Poll `check` until it returns something truthy (effects of workers and webhooks are asynchronous)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")
