"""The emulator's state: Stripe objects by id, kept in one JSON file."""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

COLLECTIONS = {
    "cus": "customers", "pm": "payment_methods", "seti": "setup_intents", "cs": "checkout_sessions",
    "sub": "subscriptions", "in": "invoices", "evt": "events", "prod": "products", "price": "prices",
    "pi": "payment_intents", "inpay": "invoice_payments",
}


def public(obj: Any) -> Any:
    """The object as the API shows it: fields starting with '_' (a card's number) stay inside."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return obj


FORMAT = 2  # 2: whole objects at the pinned API version (schema.json), events and idempotency kept


class OldStateFile(Exception):
    """The state file was written by an emulator whose objects lack what Stripe returns now."""


class Store:
    """Every object the emulator knows, persisted after each change."""

    def __init__(self, path: Path | None):
        self.path = path
        self.lock = threading.RLock()
        self.data: dict[str, Any] = {name: {} for name in COLLECTIONS.values()}
        self.data.update(idempotency={}, counters={}, format=FORMAT)
        if path and path.exists() and path.stat().st_size:
            saved = json.loads(path.read_text())
            if saved.get("format") != FORMAT:
                raise OldStateFile(
                    f"{path} was written by an older Stripe emulator: its objects lack fields Stripe returns at the "
                    "pinned API version. Delete it together with the database that names its ids (deleting var/ "
                    "starts the demo from scratch).")
            self.data.update(saved)

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self.path)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{'test_' if prefix == 'cs' else ''}{secrets.token_hex(12)}"

    @staticmethod
    def request_id() -> str:
        """`req_` and 14 letters and digits, like Stripe's Request-Id."""
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return "req_" + "".join(secrets.choice(alphabet) for _ in range(14))

    def next_number(self, name: str) -> int:
        self.data["counters"][name] = self.data["counters"].get(name, 0) + 1
        return self.data["counters"][name]

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Keep an object; `_seq` orders objects created in the same second (lists are newest first)."""
        obj.setdefault("created", int(time.time()))
        obj.setdefault("livemode", False)
        obj["_seq"] = self.next_number("objects")
        self.data[self.collection(obj["id"])][obj["id"]] = obj
        return obj

    def get(self, object_id: str) -> dict[str, Any] | None:
        name = self.collection(object_id)
        return self.data[name].get(object_id) if name else None

    def all(self, name: str) -> list[dict[str, Any]]:
        return list(self.data[name].values())

    @staticmethod
    def collection(object_id: str) -> str | None:
        return COLLECTIONS.get(object_id.split("_", 1)[0])
