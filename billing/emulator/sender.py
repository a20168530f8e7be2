"""Signed webhook delivery, the way Stripe does it: `Stripe-Signature: t=…,v1=…`, retried."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from typing import Any

import requests

log = logging.getLogger(__name__)
RETRY_DELAYS = (1, 2, 4, 8, 16, 32)


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`: HMAC-SHA256 of "t.payload" with the endpoint secret."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookSender:
    """Sends events one by one from a background thread; an endpoint that is down is retried."""

    def __init__(self, url: str | None, secret: str):
        self.url, self.secret = url, secret
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue()
        if url:
            threading.Thread(target=self._run, name="webhook-sender", daemon=True).start()

    def send(self, event: dict[str, Any]) -> None:
        if self.url:
            self.queue.put(event)

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            payload = json.dumps(event)
            for delay in (0, *RETRY_DELAYS):
                time.sleep(delay)
                try:
                    response = requests.post(self.url, data=payload, timeout=10, headers={
                        "Content-Type": "application/json; charset=utf-8",
                        "Stripe-Signature": sign(payload, self.secret),
                        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    })
                    if response.status_code < 300:
                        break
                    log.warning("webhook %s %s answered %s: %s", event["id"], event["type"],
                                response.status_code, response.text[:200])
                except requests.RequestException as exc:
                    log.warning("webhook %s %s not delivered: %s", event["id"], event["type"], exc)
            else:
                log.error("webhook %s %s given up", event["id"], event["type"])
