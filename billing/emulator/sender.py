"""Signed webhook delivery, the way Stripe does it: `Stripe-Signature: t=…,v1=…`, retried.

An emulator-only control (`drop`) makes the sender lose a share of deliveries on purpose, as a
network or an endpoint outage would: a dropped event is never POSTed, but stays in the account's
events (GET /v1/events), which is how a real account behaves once Stripe has given up retrying.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import random
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
        self.drop_share = 0.0
        self.dropped: list[str] = []
        self.sent = 0
        self._random = random.Random()
        if url:
            threading.Thread(target=self._run, name="webhook-sender", daemon=True).start()

    def drop(self, share: float, seed: int | None = None) -> None:
        """From now on, lose `share` (0 to 1) of the deliveries, chosen by a generator seeded with
        `seed`; the list of dropped events starts again."""
        self.drop_share, self.dropped = share, []
        self._random = random.Random(seed)

    def status(self) -> dict[str, Any]:
        """The control's state: the share, the events dropped since it was set, and how many events
        are still queued or being delivered."""
        return {"object": "emulator.webhooks", "drop_share": self.drop_share, "dropped": list(self.dropped),
                "sent": self.sent, "pending": self.queue.unfinished_tasks}

    def send(self, event: dict[str, Any]) -> None:
        if not self.url:
            return
        if self.drop_share and self._random.random() < self.drop_share:
            self.dropped.append(event["id"])
            log.info("webhook %s %s dropped on purpose", event["id"], event["type"])
            return
        self.queue.put(event)

    def _run(self) -> None:
        while True:
            event = self.queue.get()
            try:
                self._deliver(event)
            finally:
                self.queue.task_done()

    def _deliver(self, event: dict[str, Any]) -> None:
        """POST the event, retrying an endpoint that is down or refuses it."""
        self.sent += 1
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
