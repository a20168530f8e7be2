"""What the emulated Stripe account does: cards, subscriptions, invoices, and the events they emit."""
from __future__ import annotations

import calendar
import time
from datetime import datetime, timezone
from typing import Any

from billing.emulator.sender import WebhookSender
from billing.emulator.store import Store, public
from billing.plans import PLANS

API_VERSION = "2026-10-28.endive"
DECLINED = "4000000000000002"      # declined when the card is entered
CHARGE_FAILS = "4000000000000341"  # attaches, then every charge fails


class ApiError(Exception):
    """An error the API answers with, in Stripe's shape."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **({"code": code} if code else {}), **extra}}


def missing(object_id: str, kind: str) -> ApiError:
    return ApiError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", "resource_missing", param="id")


def add_month(ts: int, months: int) -> int:
    """The same day and time `months` later, clamped to the month's end."""
    d = datetime.fromtimestamp(ts, timezone.utc)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def card_brand(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or number[:1] == "2":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


class Account:
    """The emulated account: each operation updates the store and emits events like Stripe."""

    def __init__(self, store: Store, sender: WebhookSender):
        self.store, self.sender = store, sender

    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": public(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {
            "id": self.store.new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "data": data, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": type_,
        }
        self.sender.send(event)
        return event

    def need(self, object_id: str | None, kind: str, collection: str) -> dict[str, Any]:
        obj = self.store.data[collection].get(object_id or "")
        if obj is None or obj.get("deleted"):
            raise missing(object_id or "", kind)
        return obj

    # Payment methods -------------------------------------------------------------------------
    def create_card(self, number: str, exp_month: int, exp_year: int, name: str = "") -> dict[str, Any]:
        number = "".join(ch for ch in str(number) if ch.isdigit())
        if number == DECLINED:
            raise ApiError(402, "card_error", "Your card was declined.", "card_declined", decline_code="generic_decline")
        return self.store.add({
            "id": self.store.new_id("pm"), "object": "payment_method", "type": "card", "customer": None,
            "billing_details": {"name": name or None},
            "card": {"brand": card_brand(number), "last4": number[-4:], "exp_month": int(exp_month),
                     "exp_year": int(exp_year), "funding": "credit", "country": "US"},
            "metadata": {}, "_number": number,
        })

    def attach(self, pm_id: str, customer_id: str) -> dict[str, Any]:
        pm = self.need(pm_id, "PaymentMethod", "payment_methods")
        self.need(customer_id, "customer", "customers")
        if pm["customer"] != customer_id:
            pm["customer"] = customer_id
            self.emit("payment_method.attached", pm)
        return pm

    def detach(self, pm_id: str) -> dict[str, Any]:
        pm = self.need(pm_id, "PaymentMethod", "payment_methods")
        if pm["customer"]:
            previous = {"customer": pm["customer"]}
            customer = self.store.data["customers"].get(pm["customer"])
            if customer and customer["invoice_settings"]["default_payment_method"] == pm_id:
                customer["invoice_settings"]["default_payment_method"] = None
            pm["customer"] = None
            self.emit("payment_method.detached", pm, previous)
        return pm

    def auto_update(self, pm: dict[str, Any], exp_month: int, exp_year: int, last4: str | None) -> dict[str, Any]:
        previous = {"card": dict(pm["card"])}
        pm["card"].update(exp_month=int(exp_month), exp_year=int(exp_year), **({"last4": last4} if last4 else {}))
        return self.emit("payment_method.automatically_updated", pm, previous)

    # Subscriptions and invoices -----------------------------------------------------------------
    def create_subscription(self, customer_id: str, price_id: str, behavior: str, pm_id: str | None) -> dict[str, Any]:
        customer = self.need(customer_id, "customer", "customers")
        plan = next((p for p in PLANS.values() if p.price_id == price_id), None)
        if plan is None:
            raise ApiError(400, "invalid_request_error", f"No such price: '{price_id}'", "resource_missing",
                           param="items[0][price]")
        pm_id = pm_id or customer["invoice_settings"]["default_payment_method"]
        if not pm_id:
            raise ApiError(400, "invalid_request_error",
                           "This customer has no attached payment source or default payment method.",
                           "resource_missing")
        pm = self.need(pm_id, "PaymentMethod", "payment_methods")
        paid = not pm["_number"].endswith(CHARGE_FAILS[-4:])
        if not paid and behavior == "error_if_incomplete":
            raise ApiError(402, "card_error", "Your card was declined.", "card_declined",
                           decline_code="generic_decline")
        now = int(time.time())
        end = add_month(now, 12 if plan.interval == "year" else 1)
        sub = self._new_subscription(customer_id, plan, "active" if paid else "incomplete", now, end)
        self.emit("customer.subscription.created", sub)
        invoice = self.new_invoice(sub, paid)
        sub["latest_invoice"] = invoice["id"]
        return sub

    def _new_subscription(self, customer_id: str, plan: Any, status: str, start: int, end: int) -> dict[str, Any]:
        price = {"id": plan.price_id, "object": "price", "unit_amount": plan.amount_cents, "currency": plan.currency,
                 "recurring": {"interval": plan.interval, "interval_count": 1}, "product": f"prod_{plan.key}"}
        return self.store.add({
            "id": self.store.new_id("sub"), "object": "subscription", "customer": customer_id,
            "status": status, "cancel_at_period_end": False, "canceled_at": None,
            "currency": plan.currency, "default_payment_method": None, "metadata": {},
            "current_period_start": start, "current_period_end": end, "created": start, "start_date": start,
            "items": {"object": "list", "data": [{
                "id": self.store.new_id("si"), "object": "subscription_item", "price": price, "quantity": 1,
                "current_period_start": start, "current_period_end": end}]},
        })

    def place_subscription(self, customer_id: str, price_id: str, periods: list[tuple[int, int]],
                           canceled_at: int | None) -> dict[str, Any]:
        """A subscription with a past, as a seed needs it: one paid invoice per period, the last period
        current, cancelled at `canceled_at` if given. Nothing is emitted: this is history, not news."""
        self.need(customer_id, "customer", "customers")
        plan = next((p for p in PLANS.values() if p.price_id == price_id), None)
        if plan is None or not periods or any(start >= end for start, end in periods) \
                or any(a[1] != b[0] for a, b in zip(periods, periods[1:])):
            raise ApiError(400, "invalid_request_error", "price must name a plan and periods must follow each other")
        sub = self._new_subscription(customer_id, plan, "canceled" if canceled_at else "active", *periods[-1])
        sub.update(created=periods[0][0], start_date=periods[0][0])
        if canceled_at:
            sub.update(canceled_at=canceled_at, ended_at=canceled_at)
        customer = self.store.data["customers"][customer_id]
        for start, end in periods:
            invoice = self.store.add({
                "id": self.store.new_id("in"), "object": "invoice", "customer": customer_id, "created": start,
                "customer_email": customer.get("email"), "customer_name": customer.get("name"),
                "number": f"EMU-{self.store.next_number('invoice'):05d}", "currency": plan.currency,
                "amount_due": plan.amount_cents, "amount_paid": plan.amount_cents, "status": "paid",
                "attempt_count": 1, "period_start": start, "period_end": end,
                "status_transitions": {"paid_at": start, "finalized_at": start},
                "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub["id"]}},
                "subscription": sub["id"], "last_finalization_error": None,
            })
            sub["latest_invoice"] = invoice["id"]
            sub.setdefault("_invoices", []).append([invoice["id"], invoice["number"]])
        return sub

    def new_invoice(self, sub: dict[str, Any], paid: bool) -> dict[str, Any]:
        customer = self.store.data["customers"][sub["customer"]]
        item = sub["items"]["data"][0]
        now = int(time.time())
        invoice = self.store.add({
            "id": self.store.new_id("in"), "object": "invoice", "customer": sub["customer"],
            "customer_email": customer.get("email"), "customer_name": customer.get("name"),
            "number": f"EMU-{self.store.next_number('invoice'):05d}", "currency": sub["currency"],
            "amount_due": item["price"]["unit_amount"], "amount_paid": 0, "status": "open", "attempt_count": 1,
            "period_start": item["current_period_start"], "period_end": item["current_period_end"],
            "status_transitions": {"paid_at": None, "finalized_at": now},
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub["id"]}},
            "subscription": sub["id"], "last_finalization_error": None,
        })
        sub["latest_invoice"] = invoice["id"]
        self.settle(invoice, paid)
        return invoice

    def settle(self, invoice: dict[str, Any], paid: bool) -> None:
        """Record a charge attempt on the invoice and move its subscription accordingly."""
        sub = self.store.data["subscriptions"][invoice["subscription"]]
        previous = {"status": sub["status"]}
        if paid:
            invoice.update(status="paid", amount_paid=invoice["amount_due"])
            invoice["status_transitions"]["paid_at"] = int(time.time())
            self.emit("invoice.paid", invoice)
            if sub["status"] in ("past_due", "incomplete"):
                sub["status"] = "active"
        else:
            self.emit("invoice.payment_failed", invoice)
            if sub["status"] == "active":
                sub["status"] = "past_due"
        if sub["status"] != previous["status"]:
            self.emit("customer.subscription.updated", sub, previous)

    def set_cancel_at_period_end(self, sub: dict[str, Any], cancel: bool) -> dict[str, Any]:
        if sub["status"] == "canceled":
            raise ApiError(400, "invalid_request_error",
                           "A canceled subscription can only update its cancellation_details and metadata.")
        if sub["cancel_at_period_end"] != cancel:
            sub["cancel_at_period_end"] = cancel
            self.emit("customer.subscription.updated", sub, {"cancel_at_period_end": not cancel})
        return sub

    def cancel_now(self, sub: dict[str, Any]) -> dict[str, Any]:
        if sub["status"] != "canceled":
            sub.update(status="canceled", canceled_at=int(time.time()), ended_at=int(time.time()))
            self.emit("customer.subscription.deleted", sub)
        return sub

    def fail_payment(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The next renewal charge fails (what a real account shows days later, on command)."""
        open_invoice = self.store.data["invoices"].get(sub.get("latest_invoice") or "")
        if open_invoice and open_invoice["status"] == "open":
            open_invoice["attempt_count"] += 1
            self.settle(open_invoice, paid=False)
            return open_invoice
        return self.new_invoice(sub, paid=False)

    def pay(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The open invoice is paid (a retry succeeded, or the card was replaced)."""
        open_invoice = self.store.data["invoices"].get(sub.get("latest_invoice") or "")
        if open_invoice and open_invoice["status"] == "open":
            self.settle(open_invoice, paid=True)
            return open_invoice
        return self.new_invoice(sub, paid=True)
