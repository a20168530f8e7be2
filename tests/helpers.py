"""Small helpers every test module may use: instants, waiting, signed webhooks, the suite's secrets."""
from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
import stripe
from sqlalchemy import exists, select

from billing.models import StripeEvent
from saas.core.db import session_scope

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


def newest_emulator_event(emulator) -> str | None:
    events = requests.get(f"{emulator.base_url}/v1/events", params={"limit": 1}, timeout=10,
                          headers={"Authorization": f"Bearer {emulator.api_key}"}).json()["data"]
    return events[0]["id"] if events else None


def emulator_settled(emulator, before: str | None) -> None:
    """Wait until the webhooks the emulator sent since event `before` (newest_emulator_event at the test's
    start) have reached the suite's web server and are stored: it sends them in order, from a thread, and
    one arriving late would land in the next test's empty tables."""
    newest = newest_emulator_event(emulator)
    if newest is None or newest == before:
        return

    def stored() -> bool:
        with session_scope() as s:
            return bool(s.scalar(select(exists().where(StripeEvent.id == newest))))

    wait_until(stored, f"the emulator's webhook {newest}")


def emulator_delivered(emulator, processed: bool = True) -> dict:
    """Wait until the emulator has no webhook left to deliver and (`processed`: with a worker running)
    every stored event is processed; the dropped ones never come. Its webhook control's state."""

    def delivered():
        state = emulator.webhooks()
        if state["pending"]:
            return None
        with session_scope() as s:
            busy = processed and s.scalar(select(exists().where(StripeEvent.processed_at.is_(None))))
        return None if busy else state

    try:
        return wait_until(delivered, "the emulator's webhooks to be delivered" + (" and processed" if processed else ""),
                          timeout=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_webhook_diagnosis(emulator)}") from None


def _webhook_diagnosis(emulator) -> str:
    """What a wait for the webhooks gave up on: the emulator's sender, the events not processed (with
    their errors), and the end of the emulator's log (a delivery refused or timing out is told there)."""
    with session_scope() as s:
        stuck = s.execute(select(StripeEvent.id, StripeEvent.type, StripeEvent.error)
                          .where(StripeEvent.processed_at.is_(None)).limit(10)).all()
    log_path = getattr(emulator, "log_path", None)
    tail = log_path.read_text(errors="replace").splitlines()[-30:] if log_path and log_path.exists() else []
    return "\n".join([f"emulator webhooks: {emulator.webhooks()}", f"events not processed: {stuck}",
                      "emulator log, last lines:", *tail])


class HttpReceiver:
    """A monitor on a free loopback port that records each request's path, in arrival order."""

    def __init__(self, status: int = 200, delay: threading.Event | None = None):
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                receiver.paths.append(self.path)
                if delay is not None:
                    delay.wait(5)  # held until the test releases it: slower than any timeout it set
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
