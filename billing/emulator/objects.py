"""What the emulated Stripe account does: cards, subscriptions, invoices, and the events they emit.

Every object is built whole, with the fields Stripe returns at the pinned API version (schema.json;
the nullable ones not set here are filled with null by `schema.complete`), and every change emits
the event Stripe emits for it. An event caused by an API request names it in `request` (its
Request-Id and idempotency key); one the account makes on its own (a renewal, a card updated by the
network) has `request.id` null.

Test cards (https://docs.stripe.com/testing): 4242 4242 4242 4242 and the other brands' succeed;
the decline cards are refused when attached to a customer or saved in Checkout; 4000 0000 0000 0341
attaches but every charge fails; 4000 0025 0000 3155 asks for authentication when it is set up (in
Checkout) and then pays off-session, but a charge to it that was never set up needs authentication;
4000 0027 6000 3184 needs authentication on set-up and on every payment.
"""
from __future__ import annotations

import calendar
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing.emulator import proration, schema
from billing.emulator.checkout import luhn_ok
from billing.emulator.errors import ApiError, card_error, invalid, missing
from billing.emulator.sender import WebhookSender
from billing.emulator.store import Store, public
from billing.plans import PLANS, Plan

log = logging.getLogger(__name__)
API_VERSION = schema.api_version()
ACCOUNT_NAME = "Stripe emulator"


@dataclass(frozen=True)
class TestCard:
    """What a test card does: refused on attach/set-up, refused on charge, or asks for authentication."""

    decline: tuple[str, str | None, str] | None = None  # (code, decline_code, message) on attach and set-up
    charge_fails: bool = False                           # attaches, every charge is declined
    setup_authentication: bool = False                   # Checkout asks the customer to authenticate
    payment_authentication: str = "never"                # "never", "unless_set_up" or "always"


DECLINED = "Your card was declined."
TEST_CARDS = {
    "4000000000000002": TestCard(decline=("card_declined", "generic_decline", DECLINED)),
    "4000000000009995": TestCard(decline=("card_declined", "insufficient_funds", "Your card has insufficient funds.")),
    "4000000000009987": TestCard(decline=("card_declined", "lost_card", DECLINED)),
    "4000000000009979": TestCard(decline=("card_declined", "stolen_card", DECLINED)),
    "4000000000000069": TestCard(decline=("expired_card", None, "Your card has expired.")),
    "4000000000000127": TestCard(decline=("incorrect_cvc", None, "Your card's security code is incorrect.")),
    "4000000000000119": TestCard(decline=("processing_error", None,
                                          "An error occurred while processing your card. Try again in a little bit.")),
    "4000000000000341": TestCard(charge_fails=True),
    "4000002500003155": TestCard(setup_authentication=True, payment_authentication="unless_set_up"),
    "4000002760003184": TestCard(setup_authentication=True, payment_authentication="always"),
}
CHARGE_DECLINED = ("card_declined", "generic_decline", DECLINED)
AUTHENTICATION_REQUIRED = ("authentication_required", "authentication_required",
                           "Your card was declined. This transaction requires authentication.")


def decline_outcome(decline_code: str | None) -> tuple[str, str | None, str]:
    """(code, decline_code, message) of a charge declined for `decline_code`, as its test card is declined."""
    if decline_code == "authentication_required":
        return AUTHENTICATION_REQUIRED
    for card in TEST_CARDS.values():
        if card.decline and decline_code in (card.decline[0], card.decline[1]):
            return card.decline
    if decline_code not in (None, "generic_decline"):
        raise invalid(f"no test card is declined with {decline_code}", "decline_code")
    return CHARGE_DECLINED


def test_card(number: str) -> TestCard:
    return TEST_CARDS.get(number, TestCard())


def add_month(ts: int, months: int) -> int:
    """The same day and time `months` later, clamped to the month's end."""
    d = datetime.fromtimestamp(ts, UTC)
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
    if number.startswith(("6011", "65")):
        return "discover"
    return "unknown"


class Account:
    """The emulated account: each operation updates the store and emits events like Stripe."""

    def __init__(self, store: Store, sender: WebhookSender):
        self.store, self.sender = store, sender
        self.request: dict[str, Any] = {"id": None, "idempotency_key": None}  # the API request being served
        self.base_url = ""  # where the emulator is reached (its hosted invoice pages), set per request
        self.place_catalog()

    def place_catalog(self) -> None:
        """The catalog's products and prices (billing/plans.py, each price with its plan key as lookup_key),
        as `saas stripe sync-plans` leaves a real account; placed without events, once."""
        now = int(time.time())
        for plan in PLANS.values():
            prod_id = f"prod_{plan.key.replace('-', '_')}"
            if prod_id not in self.store.data["products"]:
                self.store.add(self.product({"id": prod_id, "name": plan.label}, now))
            if plan.price_id not in self.store.data["prices"]:
                taken = any(p["lookup_key"] == plan.key for p in self.store.all("prices"))
                self.store.add(self.price(plan, now, prod_id, None if taken else plan.key))

    def emit(self, type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record and send an event about `obj`, refusing (500) to send one Stripe would not."""
        found = schema.problems(schema.resource(obj["object"]), public(obj))
        if found:
            log.error("%s about %s does not match Stripe's definition: %s", type_, obj["id"], found)
            raise ApiError(500, "api_error", f"The Stripe emulator built a {type_} event that does not match "
                           "Stripe's definition: " + "; ".join(found[:10]))
        data: dict[str, Any] = {"object": public(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = self.store.add(schema.complete(schema.resource("event"), {
            "id": self.store.new_id("evt"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "data": data, "livemode": False,
            "pending_webhooks": 1 if self.sender.url else 0, "request": dict(self.request), "type": type_,
        }))
        self.sender.send(public(event))
        return event

    def need(self, object_id: str | None, kind: str, collection: str, param: str = "id") -> dict[str, Any]:
        """The object, or Stripe's "No such …" (404 for the URL's id, 400 for a parameter's)."""
        obj = self.store.data[collection].get(object_id or "")
        if obj is None or obj.get("_deleted"):
            raise missing(object_id or "", kind, param, 404 if param == "id" else 400)
        return obj

    # Customers --------------------------------------------------------------------------------
    def create_customer(self, fields: dict[str, Any]) -> dict[str, Any]:
        cus_id = self.store.new_id("cus")
        customer = self.store.add(schema.complete(schema.resource("customer"), {
            "id": cus_id, "object": "customer", "balance": 0, "created": int(time.time()), "delinquent": False,
            "description": fields.get("description"), "email": fields.get("email"), "name": fields.get("name"),
            "phone": fields.get("phone"), "invoice_prefix": cus_id[4:12].upper(), "livemode": False,
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                                 "rendering_options": None},
            "metadata": {k: v for k, v in (fields.get("metadata") or {}).items() if v is not None},
            "next_invoice_sequence": 1, "preferred_locales": [], "tax_exempt": "none",
        }))
        self.emit("customer.created", customer)
        return customer

    def update_customer(self, customer: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        previous: dict[str, Any] = {}
        apply_update(customer, fields, ("email", "name", "description", "phone"), previous)
        settings = fields.get("invoice_settings") or {}
        if "default_payment_method" in settings:
            pm_id = settings["default_payment_method"]
            if pm_id is not None:
                pm = self.need(pm_id, "PaymentMethod", "payment_methods", "invoice_settings[default_payment_method]")
                if pm["customer"] != customer["id"]:
                    raise invalid(f"The customer does not have a payment method with the ID {pm_id}. The payment "
                                  "method must be attached to the customer.",
                                  "invoice_settings[default_payment_method]", "resource_missing")
            old = customer["invoice_settings"]["default_payment_method"]
            if old != pm_id:
                previous["invoice_settings"] = {"default_payment_method": old}
                customer["invoice_settings"]["default_payment_method"] = pm_id
        if previous:
            self.emit("customer.updated", customer, previous)
        return customer

    def delete_customer(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Cancels its subscriptions at once; the customer then reads back as a deleted stub."""
        for sub in self.store.all("subscriptions"):
            if sub["customer"] == customer["id"]:
                self.cancel_now(sub)
        customer["_deleted"] = True
        self.emit("customer.deleted", customer)
        return {"id": customer["id"], "object": "customer", "deleted": True}

    # Payment methods -------------------------------------------------------------------------
    def create_card(self, number: str, exp_month: int, exp_year: int, name: str | None = None,
                    cvc: str | None = None) -> dict[str, Any]:
        """A card PaymentMethod; like Stripe, only the number's form and the expiry are checked here."""
        number = "".join(ch for ch in str(number) if ch.isdigit())
        if not (12 <= len(number) <= 19) or not luhn_ok(number):
            raise card_error("Your card number is incorrect.", "incorrect_number", param="card[number]")
        if not 1 <= exp_month <= 12:
            raise card_error("Your card's expiration month is invalid.", "invalid_expiry_month",
                             param="card[exp_month]")
        today = datetime.now(UTC)
        if exp_year < today.year or exp_year > today.year + 50:
            raise card_error("Your card's expiration year is invalid.", "invalid_expiry_year", param="card[exp_year]")
        if (exp_year, exp_month) < (today.year, today.month):
            raise card_error("Your card's expiration month is invalid.", "invalid_expiry_month",
                             param="card[exp_month]")
        brand = card_brand(number)
        return self.store.add(schema.complete(schema.resource("payment_method"), {
            "id": self.store.new_id("pm"), "object": "payment_method", "allow_redisplay": "unspecified",
            "billing_details": {"address": {"city": None, "country": None, "line1": None, "line2": None,
                                            "postal_code": None, "state": None},
                                "email": None, "name": name or None, "phone": None, "tax_id": None},
            "card": {"brand": brand, "checks": {"address_line1_check": None, "address_postal_code_check": None,
                                                "cvc_check": "pass" if cvc else None},
                     "country": "US", "display_brand": brand, "exp_month": exp_month, "exp_year": exp_year,
                     "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16], "funding": "credit",
                     "generated_from": None, "last4": number[-4:],
                     "networks": {"available": [brand], "preferred": None}, "regulated_status": "unregulated",
                     "three_d_secure_usage": {"supported": True}, "wallet": None},
            "created": int(time.time()), "customer": None, "livemode": False, "metadata": {}, "type": "card",
            "_number": number, "_set_up": False,
        }))

    def attach(self, pm: dict[str, Any], customer_id: str, param: str = "customer") -> dict[str, Any]:
        """Attach a card to a customer; a decline card is refused here, as Stripe refuses it."""
        self.need(customer_id, "customer", "customers", param)
        if pm["customer"] == customer_id:
            return pm
        if pm["customer"]:
            raise invalid("The payment method you provided has already been attached to a customer.")
        decline = test_card(pm["_number"]).decline
        if decline:
            code, decline_code, message = decline
            raise card_error(message, code, decline_code)
        pm["customer"] = customer_id
        self.emit("payment_method.attached", pm)
        return pm

    def detach(self, pm: dict[str, Any]) -> dict[str, Any]:
        if not pm["customer"]:
            raise invalid("The payment method you provided is not attached to a customer so detachment is "
                          "impossible.")
        previous = {"customer": pm["customer"]}
        customer = self.store.data["customers"].get(pm["customer"])
        if customer and customer["invoice_settings"]["default_payment_method"] == pm["id"]:
            customer["invoice_settings"]["default_payment_method"] = None
            self.emit("customer.updated", customer, {"invoice_settings": {"default_payment_method": pm["id"]}})
        pm["customer"] = None
        self.emit("payment_method.detached", pm, previous)
        return pm

    def auto_update(self, pm: dict[str, Any], exp_month: int, exp_year: int, last4: str | None) -> dict[str, Any]:
        previous = {"card": dict(pm["card"])}
        pm["card"].update(exp_month=int(exp_month), exp_year=int(exp_year), **({"last4": last4} if last4 else {}))
        return self.emit("payment_method.automatically_updated", pm, previous)

    # Checkout (setup mode) ---------------------------------------------------------------------
    def create_setup_session(self, customer: dict[str, Any], fields: dict[str, Any], base_url: str) -> dict[str, Any]:
        now = int(time.time())
        seti_id = self.store.new_id("seti")
        seti = self.store.add(schema.complete(schema.resource("setup_intent"), {
            "id": seti_id, "object": "setup_intent", "client_secret": f"{seti_id}_secret_{self.store.new_id('x')[2:]}",
            "created": now, "customer": customer["id"], "livemode": False, "metadata": {},
            "payment_method_options": {"card": {"mandate_options": None, "network": None,
                                                "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "status": "requires_payment_method", "usage": "off_session",
        }))
        self.emit("setup_intent.created", seti)
        session_id = self.store.new_id("cs")
        return self.store.add(schema.complete(schema.resource("checkout.session"), {
            "id": session_id, "object": "checkout.session",
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "cancel_url": fields.get("cancel_url"), "client_reference_id": fields.get("client_reference_id"),
            "created": now, "currency": fields.get("currency"), "custom_fields": [],
            "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                            "terms_of_service_acceptance": None},
            "customer": customer["id"], "customer_details": None, "expires_at": now + 24 * 3600, "livemode": False,
            "metadata": {k: v for k, v in (fields.get("metadata") or {}).items() if v is not None},
            "mode": "setup", "payment_method_collection": "always",
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "payment_status": "no_payment_required",
            "setup_intent": seti["id"], "shipping_options": [], "status": "open",
            "success_url": fields.get("success_url"), "ui_mode": "hosted_page",
            "url": f"{base_url}checkout/{session_id}",
        }))

    def complete_setup(self, session: dict[str, Any], pm: dict[str, Any]) -> None:
        """The customer saved a card in Checkout: attached, set up for off-session use, session complete."""
        self.attach(pm, session["customer"])
        pm["_set_up"] = True
        seti = self.store.data["setup_intents"][session["setup_intent"]]
        seti.update(status="succeeded", payment_method=pm["id"], last_setup_error=None, next_action=None)
        customer = self.store.data["customers"][session["customer"]]
        session.update(status="complete", url=None, customer_details={
            "address": None, "business_name": None, "email": customer.get("email"), "individual_name": None,
            "name": pm["billing_details"]["name"], "phone": None, "tax_exempt": "none", "tax_ids": []})
        self.emit("setup_intent.succeeded", seti)
        self.emit("checkout.session.completed", session)

    def fail_setup(self, session: dict[str, Any], pm: dict[str, Any], error: ApiError) -> None:
        """Set-up refused (a decline card, or authentication failed): the session stays open."""
        seti = self.store.data["setup_intents"][session["setup_intent"]]
        err = error.body["error"]
        last_error = schema.complete("stripe._setup_intent:SetupIntent.LastSetupError", {
            "code": err.get("code"), "decline_code": err.get("decline_code"), "doc_url": err.get("doc_url"),
            "message": err["message"], "payment_method_type": "card", "type": err["type"]})
        seti.update(status="requires_payment_method", payment_method=None, next_action=None,
                    last_setup_error=last_error)
        self.emit("setup_intent.setup_failed", seti)

    def expire_session(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["status"] != "open":
            raise invalid('Only Checkout Sessions with a status in ["open"] can be expired.')
        session.update(status="expired", url=None)
        seti = self.store.data["setup_intents"][session["setup_intent"]]
        seti.update(status="canceled", cancellation_reason="abandoned")
        self.emit("setup_intent.canceled", seti)
        self.emit("checkout.session.expired", session)
        return session

    # Products and prices ------------------------------------------------------------------------
    def product(self, fields: dict[str, Any], created: int) -> dict[str, Any]:
        return schema.complete(schema.resource("product"), {
            "id": fields.get("id") or self.store.new_id("prod"), "object": "product",
            "active": fields.get("active", True), "created": created, "description": fields.get("description"),
            "images": [], "livemode": False, "marketing_features": [],
            "metadata": {k: v for k, v in (fields.get("metadata") or {}).items() if v}, "name": fields["name"],
            "type": "service", "updated": created,
        })

    def create_product(self, fields: dict[str, Any]) -> dict[str, Any]:
        if fields.get("id") and fields["id"] in self.store.data["products"]:
            raise invalid(f"Product already exists: {fields['id']}", "id", "resource_already_exists")
        product = self.store.add(self.product(fields, int(time.time())))
        self.emit("product.created", product)
        return product

    def update_product(self, product: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        previous: dict[str, Any] = {}
        apply_update(product, fields, ("name", "description", "active"), previous)
        if previous:
            product["updated"] = int(time.time())
            self.emit("product.updated", product, previous)
        return product

    def create_price(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A recurring or one-time per-unit price; a lookup_key held by another price is refused unless
        `transfer_lookup_key` moves it here (that price then has none: price.updated)."""
        product = self.need(fields["product"], "product", "products", "product")
        key = fields.get("lookup_key")
        holder = next((p for p in self.store.all("prices") if key and p["lookup_key"] == key), None)
        if holder is not None and not fields.get("transfer_lookup_key"):
            raise invalid(f"A price (`{holder['id']}`) already uses that lookup key.", "lookup_key")
        recurring = fields.get("recurring")
        amount = fields["unit_amount"]
        price = schema.complete(schema.resource("price"), {
            "id": self.store.new_id("price"), "object": "price", "active": fields.get("active", True),
            "billing_scheme": "per_unit", "created": int(time.time()), "currency": fields["currency"],
            "livemode": False, "lookup_key": key, "metadata": {k: v for k, v in (fields.get("metadata") or {}).items()
                                                               if v},
            "nickname": fields.get("nickname"), "product": product["id"],
            "recurring": {"interval": recurring["interval"], "interval_count": recurring.get("interval_count", 1),
                          "meter": None, "trial_period_days": None, "usage_type": "licensed"} if recurring else None,
            "tax_behavior": "unspecified", "type": "recurring" if recurring else "one_time", "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        })
        if holder is not None:
            holder["lookup_key"] = None
            self.emit("price.updated", holder, {"lookup_key": key})
        self.store.add(price)
        self.emit("price.created", price)
        return price

    def catalog_plan(self, price_id: str) -> Plan | None:
        """The plan a subscription to this price buys: an active, recurring, monthly or yearly price."""
        price = self.store.data["prices"].get(price_id or "")
        if price is None or not price["active"] or not price["recurring"] \
                or price["recurring"]["interval"] not in ("month", "year") or price["recurring"]["interval_count"] != 1:
            return None
        product = self.store.data["products"][price["product"]]
        return Plan(price["lookup_key"] or price["id"], price["nickname"] or product["name"], price["id"],
                    price["unit_amount"], price["currency"], price["recurring"]["interval"])

    # Subscriptions and invoices -----------------------------------------------------------------
    def price(self, plan: Plan, created: int, product: str | None = None,
              lookup_key: str | None = None) -> dict[str, Any]:
        """The stored price of a plan (a new one: `product` and `lookup_key` given)."""
        if product is None:
            return public(self.store.data["prices"][plan.price_id])
        return schema.complete(schema.resource("price"), {
            "id": plan.price_id, "object": "price", "active": True, "billing_scheme": "per_unit", "created": created,
            "currency": plan.currency, "livemode": False, "lookup_key": lookup_key, "metadata": {},
            "nickname": plan.label, "product": product,
            "recurring": {"interval": plan.interval, "interval_count": 1, "meter": None, "trial_period_days": None,
                          "usage_type": "licensed"},
            "tax_behavior": "unspecified", "type": "recurring", "unit_amount": plan.amount_cents,
            "unit_amount_decimal": str(plan.amount_cents),
        })

    def plan_object(self, plan: Plan, created: int) -> dict[str, Any]:
        return schema.complete(schema.resource("plan"), {
            "id": plan.price_id, "object": "plan", "active": True, "amount": plan.amount_cents,
            "amount_decimal": str(plan.amount_cents), "billing_scheme": "per_unit", "created": created,
            "currency": plan.currency, "interval": plan.interval, "interval_count": 1, "livemode": False,
            "metadata": {}, "nickname": plan.name, "product": self.store.data["prices"][plan.price_id]["product"],
            "usage_type": "licensed",
        })

    def charge_outcome(self, pm: dict[str, Any]) -> tuple[str, str | None, str] | None:
        """None if an off-session charge to this card succeeds, else (code, decline_code, message)."""
        card = test_card(pm["_number"])
        if card.charge_fails or card.decline:
            return card.decline or CHARGE_DECLINED
        if card.payment_authentication == "always" or (card.payment_authentication == "unless_set_up"
                                                        and not pm["_set_up"]):
            return AUTHENTICATION_REQUIRED
        return None

    def create_subscription(self, customer: dict[str, Any], plan: Any, quantity: int, behavior: str,
                            pm_id: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
        pm_id = pm_id or customer["invoice_settings"]["default_payment_method"]
        if not pm_id:
            raise invalid("This customer has no attached payment source or default payment method. Please "
                          "consider adding a default payment method. For more information, visit "
                          "https://stripe.com/docs/billing/subscriptions/payment-methods-setting"
                          "#payment-method-priority.", code="resource_missing")
        pm = self.store.data["payment_methods"][pm_id]
        outcome = None if behavior == "default_incomplete" else self.charge_outcome(pm)
        if outcome and behavior == "error_if_incomplete":
            code, decline_code, message = outcome
            raise card_error(message, code, decline_code)
        now = int(time.time())
        end = add_month(now, 12 if plan.interval == "year" else 1)
        status = "active" if behavior != "default_incomplete" and outcome is None else "incomplete"
        sub = self._new_subscription(customer["id"], plan, quantity, status, now, end)
        sub["metadata"] = {k: v for k, v in metadata.items() if v is not None}
        self.emit("customer.subscription.created", sub)
        invoice = self.new_invoice(sub, "subscription_create", now, now)
        if behavior != "default_incomplete":
            self.attempt_payment(invoice, outcome)
        return sub

    def _new_subscription(self, customer_id: str, plan: Any, quantity: int, status: str, start: int,
                          end: int) -> dict[str, Any]:
        sub_id = self.store.new_id("sub")
        item = schema.complete(schema.resource("subscription_item"), {
            "id": self.store.new_id("si"), "object": "subscription_item", "created": start,
            "current_period_start": start, "current_period_end": end, "discounts": [], "metadata": {},
            "plan": self.plan_object(plan, start), "price": self.price(plan, start), "quantity": quantity,
            "subscription": sub_id, "tax_rates": [],
        })
        return self.store.add(schema.complete(schema.resource("subscription"), {
            "id": sub_id, "object": "subscription",
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": start, "billing_mode": {"flexible": {"proration_discounts": "included"},
                                                           "type": "flexible", "updated_at": None},
            "billing_schedules": [], "cancel_at_period_end": False, "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": start, "currency": plan.currency,
            "customer": customer_id, "default_payment_method": None, "default_tax_rates": [], "discounts": [],
            "ended_at": None, "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": [item], "has_more": False, "total_count": 1,
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
            "latest_invoice": None, "livemode": False, "metadata": {},
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "start_date": start, "status": status,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        }))

    def place_subscription(self, customer_id: str, price_id: str, periods: list[tuple[int, int]],
                           canceled_at: int | None, last_failed: bool = False) -> dict[str, Any]:
        """A subscription with a past, as a seed needs it: one paid invoice per period, the last period
        current, cancelled at `canceled_at` if given; with `last_failed`, the last period's invoice is open,
        its charge declined, the subscription past_due and every retry declined until the card changes.
        Nothing is emitted: this is history, not news."""
        customer = self.need(customer_id, "customer", "customers", "customer")
        plan = self.catalog_plan(price_id)
        if plan is None or not periods or any(start >= end for start, end in periods) \
                or any(a[1] != b[0] for a, b in itertools.pairwise(periods)):
            raise invalid("price must name a plan and periods must follow each other")
        sub = self._new_subscription(customer_id, plan, 1, "canceled" if canceled_at else "active", *periods[-1])
        sub.update(created=periods[0][0], start_date=periods[0][0], billing_cycle_anchor=periods[0][0])
        if canceled_at:
            sub.update(canceled_at=canceled_at, ended_at=canceled_at)
            sub["cancellation_details"]["reason"] = "cancellation_requested"
        for n, (start, end) in enumerate(periods):
            window = (start, start) if n == 0 else periods[n - 1]
            invoice = self.store.add(self._invoice(
                customer, sub, "subscription_create" if n == 0 else "subscription_cycle", (start, end), window, start))
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0, attempted=True,
                           attempt_count=1, auto_advance=False)
            invoice["status_transitions"].update(finalized_at=start, paid_at=start)
            sub["latest_invoice"] = invoice["id"]
            sub.setdefault("_invoices", []).append([invoice["id"], invoice["number"]])
        if last_failed and not canceled_at:
            invoice.update(status="open", amount_paid=0, amount_remaining=invoice["amount_due"], auto_advance=True,
                           next_payment_attempt=periods[-1][0] + 3 * 24 * 3600)
            invoice["status_transitions"]["paid_at"] = None
            sub["status"] = "past_due"
            self.record_payment(invoice, sub, CHARGE_DECLINED)
            pm = self.default_card(sub)
            invoice["_declined_for"] = [pm["id"] if pm else None, list(CHARGE_DECLINED)]
        return sub

    def _line(self, in_id: str, sub: dict[str, Any], price: dict[str, Any], quantity: int, amount: int,
              description: str, period: tuple[int, int], proration: bool = False) -> dict[str, Any]:
        """One invoice line for the subscription's item at `price` (a proration when `proration`)."""
        item = sub["items"]["data"][0]
        return schema.complete(schema.resource("line_item"), {
            "id": self.store.new_id("il"), "object": "line_item", "amount": amount, "currency": sub["currency"],
            "description": description, "discount_amounts": [], "discountable": not proration, "discounts": [],
            "invoice": in_id, "livemode": False, "metadata": {},
            "parent": {"invoice_item_details": None, "type": "subscription_item_details",
                       "subscription_item_details": {"invoice_item": None, "proration": proration,
                                                     "proration_details": {"credited_items": None},
                                                     "subscription": sub["id"], "subscription_item": item["id"]}},
            "period": {"start": period[0], "end": period[1]}, "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details", "unit_amount_decimal": str(price["unit_amount"])},
            "quantity": quantity, "subtotal": amount, "taxes": [],
        })

    def _invoice(self, customer: dict[str, Any], sub: dict[str, Any], reason: str, service: tuple[int, int],
                 window: tuple[int, int], created: int, lines: Any = None,
                 preview: bool = False) -> dict[str, Any]:
        """A finalized, open invoice for one subscription period (`service`, in its line's `period`);
        `window` is the invoice's own period_start/end (when invoice items could join it). `lines`: other
        lines than the period's one (a plan change's prorations). Not stored: `store.add` it. A `preview` is a
        draft that will never exist: an `upcoming_in_` id, no number, no hosted page or PDF."""
        item = sub["items"]["data"][0]
        in_id = self.store.new_id("upcoming_in" if preview else "in")
        if lines is None:
            amount = item["price"]["unit_amount"] * (item["quantity"] or 1)
            plan = self.catalog_plan(item["price"]["id"])
            label = f"{item['quantity']} × {plan.name if plan else item['price']['id']} " \
                    f"(at ${item['price']['unit_amount'] / 100:.2f} / {item['price']['recurring']['interval']})"
            lines = [self._line(in_id, sub, item["price"], item["quantity"], amount, label, service)]
        if callable(lines):
            lines = lines(in_id)
        total = sum(line["amount"] for line in lines)
        invoice = schema.complete(schema.resource("invoice"), {
            "id": in_id, "object": "invoice", "account_country": "US", "account_name": ACCOUNT_NAME,
            "amount_due": total, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": total,
            "amount_shipping": 0, "attempt_count": 0, "attempted": False, "auto_advance": True,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                              "status": None},
            "billing_reason": reason, "collection_method": "charge_automatically", "created": created,
            "currency": sub["currency"], "customer": customer["id"], "customer_email": customer.get("email"),
            "customer_name": customer.get("name"), "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_tax_rates": [], "discounts": [], "effective_at": created, "ending_balance": 0,
            "issuer": {"type": "self"},
            "lines": {"object": "list", "data": lines, "has_more": False, "total_count": len(lines),
                      "url": f"/v1/invoices/{in_id}/lines"},
            "hosted_invoice_url": f"{self.base_url}/invoice/{in_id}" if self.base_url else None,
            "invoice_pdf": f"{self.base_url}/invoice/{in_id}/pdf" if self.base_url else None,
            "livemode": False, "metadata": {}, "number": f"EMU-{self.store.next_number('invoice'):05d}",
            "parent": {"quote_details": None, "type": "subscription_details",
                       "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"],
                                                "subscription_proration_date": None}},
            "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
            "period_start": window[0], "period_end": window[1], "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0, "starting_balance": 0, "status": "open",
            "status_transitions": {"finalized_at": created, "marked_uncollectible_at": None, "paid_at": None,
                                   "voided_at": None},
            "subtotal": total, "subtotal_excluding_tax": total, "total": total, "total_discount_amounts": [],
            "total_excluding_tax": total, "total_pretax_credit_amounts": [], "total_taxes": [],
            "webhooks_delivered_at": created,
        })
        if preview:
            invoice.update(number=None, hosted_invoice_url=None, invoice_pdf=None, status="draft",
                           auto_advance=False, webhooks_delivered_at=None)
            invoice["status_transitions"]["finalized_at"] = None
        return invoice

    def new_invoice(self, sub: dict[str, Any], reason: str, window_start: int, window_end: int) -> dict[str, Any]:
        """The invoice for the subscription's current period, created and finalized (events of both)."""
        customer = self.store.data["customers"][sub["customer"]]
        item = sub["items"]["data"][0]
        now = int(time.time())
        invoice = self._invoice(customer, sub, reason, (item["current_period_start"], item["current_period_end"]),
                                (window_start, window_end), now)
        return self.issue(customer, sub, invoice)

    def issue(self, customer: dict[str, Any], sub: dict[str, Any], invoice: dict[str, Any]) -> dict[str, Any]:
        """Store a built invoice as the subscription's latest, the customer's balance applied to it (a credit
        pays what it can, the rest stays on the balance), with the events of its creation and finalization."""
        self.apply_balance(customer, invoice)
        if invoice["ending_balance"] != invoice["starting_balance"]:
            previous = {"balance": customer.get("balance", 0)}
            customer["balance"] = invoice["ending_balance"]
            self.emit("customer.updated", customer, previous)
        self.store.add(invoice)
        sub["latest_invoice"] = invoice["id"]
        self.emit("invoice.created", invoice)
        self.emit("invoice.finalized", invoice)
        return invoice

    @staticmethod
    def apply_balance(customer: dict[str, Any], invoice: dict[str, Any]) -> None:
        balance = customer.get("balance") or 0
        due, ending = proration.settle(invoice["total"], balance)
        invoice.update(starting_balance=balance, ending_balance=ending, amount_due=due, amount_remaining=due)

    def attempt_payment(self, invoice: dict[str, Any], outcome: tuple[str, str | None, str] | None) -> None:
        """One charge attempt on the invoice (`outcome` None: paid, else why not); the subscription follows."""
        sub = self.store.data["subscriptions"][invoice["parent"]["subscription_details"]["subscription"]]
        previous = {"status": sub["status"]}
        if invoice["amount_due"] == 0:  # nothing to charge (a credit paid it): paid on finalization, no payment
            outcome = None
        else:
            invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
            self.record_payment(invoice, sub, outcome)
        if outcome is None:
            now = int(time.time())
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0,
                           next_payment_attempt=None)
            invoice["status_transitions"]["paid_at"] = now
            self.emit("invoice.paid", invoice)
            self.emit("invoice.payment_succeeded", invoice)
            if sub["status"] in ("past_due", "incomplete", "unpaid"):
                sub["status"] = "active"
        else:
            invoice["next_payment_attempt"] = int(time.time()) + 3 * 24 * 3600
            if outcome == AUTHENTICATION_REQUIRED:
                self.emit("invoice.payment_action_required", invoice)
            self.emit("invoice.payment_failed", invoice)
            if sub["status"] == "active":
                sub["status"] = "past_due"
        if sub["status"] != previous["status"]:
            self.emit("customer.subscription.updated", sub, previous)

    def record_payment(self, invoice: dict[str, Any], sub: dict[str, Any],
                       outcome: tuple[str, str | None, str] | None) -> None:
        """The invoice's PaymentIntent (one per invoice, as Stripe keeps it across retries) after this attempt,
        with `last_payment_error` when it was declined, and the InvoicePayment that links the two (listed
        by GET /v1/invoice_payments?invoice=…). No events: our product reads them through the invoice."""
        now = int(time.time())
        pi = self.store.data["payment_intents"].get(invoice.get("_payment_intent") or "")
        if pi is None:
            pi_id = self.store.new_id("pi")
            pi = self.store.add(schema.complete(schema.resource("payment_intent"), {
                "id": pi_id, "object": "payment_intent", "amount": invoice["amount_due"], "amount_capturable": 0,
                "amount_received": 0, "capture_method": "automatic_async",
                "client_secret": f"{pi_id}_secret_{self.store.new_id('x')[2:]}", "confirmation_method": "automatic",
                "created": now, "currency": invoice["currency"], "customer": invoice["customer"],
                "livemode": False, "metadata": {}, "payment_method_types": ["card"],
                "status": "requires_payment_method",
            }))
            invoice["_payment_intent"] = pi_id
            self.store.add(schema.complete(schema.resource("invoice_payment"), {
                "id": self.store.new_id("inpay"), "object": "invoice_payment",
                "amount_paid": None, "amount_requested": invoice["amount_due"], "created": now,
                "currency": invoice["currency"], "invoice": invoice["id"], "is_default": True, "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi_id, "charge": None,
                            "payment_record": None},
                "status": "open", "status_transitions": {"canceled_at": None, "paid_at": None},
            }))
        pm = self.default_card(sub)
        pi["payment_method"] = pm["id"] if pm else None
        if outcome is None:
            pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None, next_action=None)
            payment = next(p for p in self.store.all("invoice_payments") if p["invoice"] == invoice["id"])
            payment.update(status="paid", amount_paid=pi["amount"])
            payment["status_transitions"]["paid_at"] = now
            return
        code, decline_code, message = outcome
        error: dict[str, Any] = {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                                 "code": code, "doc_url": "https://docs.stripe.com/error-codes/" + code.replace("_", "-"),
                                 "message": message, "payment_method_type": "card", "type": "card_error"}
        if decline_code:
            error["decline_code"] = decline_code
        pi.update(status="requires_action" if outcome == AUTHENTICATION_REQUIRED else "requires_payment_method",
                  last_payment_error=error)

    def confirm_invoice_payment(self, invoice: dict[str, Any]) -> None:
        """The subscriber confirms the payment on the hosted invoice page: a charge waiting for authentication
        goes through; any other open invoice is charged to the default card as a retry would."""
        pi = self.store.data["payment_intents"].get(invoice.get("_payment_intent") or "")
        sub = self.store.data["subscriptions"][invoice["parent"]["subscription_details"]["subscription"]]
        if pi is not None and pi["status"] == "requires_action":
            outcome = None
        else:
            outcome = self.retry_outcome(invoice, sub)
            outcome = None if outcome == AUTHENTICATION_REQUIRED else outcome  # authenticated on this page
        self.attempt_payment(invoice, outcome)

    def set_cancel_at_period_end(self, sub: dict[str, Any], cancel: bool,
                                 details: dict[str, Any] | None = None) -> dict[str, Any]:
        """Cancel at the period's end or take it back; `details`: the customer's feedback and comment."""
        if sub["status"] == "canceled":
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        previous: dict[str, Any] = {"cancellation_details": dict(sub["cancellation_details"])}
        if sub["cancel_at_period_end"] != cancel:
            previous.update(cancel_at_period_end=not cancel, cancel_at=sub["cancel_at"], canceled_at=sub["canceled_at"])
            item = sub["items"]["data"][0]
            sub.update(cancel_at_period_end=cancel, cancel_at=item["current_period_end"] if cancel else None,
                       canceled_at=int(time.time()) if cancel else None)
            sub["cancellation_details"]["reason"] = "cancellation_requested" if cancel else None
        for name in ("comment", "feedback"):
            if details and name in details:
                sub["cancellation_details"][name] = details[name] or None  # '' unsets
        if len(previous) > 1 or previous["cancellation_details"] != sub["cancellation_details"]:
            self.emit("customer.subscription.updated", sub, previous)
        return sub

    # Plan changes -------------------------------------------------------------------------------
    def _change_invoice(self, sub: dict[str, Any], price: dict[str, Any], at: int, preview: bool) -> dict[str, Any]:
        """The invoice a change of the item to `price` at `at` makes with proration_behavior=always_invoice:
        the old price's unused time credited, the new price's remaining time (or, for another interval, a
        whole new period) charged (billing/emulator/proration.py)."""
        item = sub["items"]["data"][0]
        start, end = item["current_period_start"], item["current_period_end"]
        quantity = item["quantity"] or 1
        same = price["recurring"]["interval"] == item["price"]["recurring"]["interval"]
        new_end = end if same else add_month(at, 12 if price["recurring"]["interval"] == "year" else 1)
        found = proration.change_lines(item["price"]["unit_amount"] * quantity, price["unit_amount"] * quantity,
                                       at, start, end, same, new_end)
        after = datetime.fromtimestamp(at, UTC).strftime("%d %b %Y")

        def name(p: dict[str, Any]) -> str:
            plan = self.catalog_plan(p["id"])
            return plan.name if plan else p["id"]

        def build(in_id: str) -> list[dict[str, Any]]:
            lines = []
            for line in found:
                p = item["price"] if line.credit else price
                if line.credit:
                    text = f"Unused time on {quantity} × {name(p)} after {after}"
                elif line.proration:
                    text = f"Remaining time on {quantity} × {name(p)} after {after}"
                else:
                    text = f"{quantity} × {name(p)} (at ${p['unit_amount'] / 100:.2f} / {p['recurring']['interval']})"
                lines.append(self._line(in_id, sub, p, quantity, line.amount, text, (line.start, line.end),
                                        line.proration))
            return lines

        customer = self.store.data["customers"][sub["customer"]]
        invoice = self._invoice(customer, sub, "subscription_update", (at, new_end), (at, at), int(time.time()),
                                build, preview)
        invoice["parent"]["subscription_details"]["subscription_proration_date"] = at
        self.apply_balance(customer, invoice)
        return invoice

    def preview_change(self, sub: dict[str, Any], price: dict[str, Any], at: int) -> dict[str, Any]:
        """POST /v1/invoices/create_preview for a price change: the invoice it would make; nothing is stored."""
        return self._change_invoice(sub, price, at, preview=True)

    def change_price(self, sub: dict[str, Any], price: dict[str, Any], at: int, payment_behavior: str) -> dict[str, Any]:
        """Move the item to `price` at `at`, invoicing the prorations at once and charging them (a credit goes to
        the customer's balance). With error_if_incomplete a declined charge is refused and nothing changes."""
        item = sub["items"]["data"][0]
        if price["id"] == item["price"]["id"]:
            return sub
        invoice = self._change_invoice(sub, price, at, preview=False)
        pm = self.default_card(sub)
        outcome = None
        if invoice["amount_due"] > 0:
            outcome = self.charge_outcome(pm) if pm else CHARGE_DECLINED
        if outcome and payment_behavior == "error_if_incomplete":
            code, decline_code, message = outcome
            raise card_error(message, code, decline_code)
        previous = {"items": public(sub["items"]), "latest_invoice": sub["latest_invoice"]}
        plan = self.catalog_plan(price["id"])
        item.update(price=public(price), plan=self.plan_object(plan, price["created"]) if plan else item["plan"])
        if price["recurring"]["interval"] != previous["items"]["data"][0]["price"]["recurring"]["interval"]:
            item.update(current_period_start=at, current_period_end=invoice["lines"]["data"][-1]["period"]["end"])
            previous["billing_cycle_anchor"] = sub["billing_cycle_anchor"]
            sub["billing_cycle_anchor"] = at
        customer = self.store.data["customers"][sub["customer"]]
        self.issue(customer, sub, invoice)
        self.emit("customer.subscription.updated", sub, previous)
        self.attempt_payment(invoice, outcome)
        return sub

    def cancel_now(self, sub: dict[str, Any]) -> dict[str, Any]:
        if sub["status"] != "canceled":
            now = int(time.time())
            sub.update(status="canceled", canceled_at=sub["canceled_at"] or now, ended_at=now)
            sub["cancellation_details"]["reason"] = "cancellation_requested"
            self.emit("customer.subscription.deleted", sub)
        return sub

    def renew(self, sub: dict[str, Any], charge: bool = True) -> dict[str, Any]:
        """The next period starts (automatic): the item's period moves on, its invoice is made and, unless
        `charge` is False, charged to the subscription's or customer's default card."""
        item = sub["items"]["data"][0]
        previous = {"items": public(sub["items"]), "latest_invoice": sub["latest_invoice"]}
        window = (item["current_period_start"], item["current_period_end"])
        months = 12 if item["price"]["recurring"]["interval"] == "year" else 1
        item.update(current_period_start=window[1], current_period_end=add_month(window[1], months))
        invoice = self.new_invoice(sub, "subscription_cycle", *window)
        self.emit("customer.subscription.updated", sub, previous)
        if charge:
            pm = self.default_card(sub)
            self.attempt_payment(invoice, self.charge_outcome(pm) if pm else CHARGE_DECLINED)
        return invoice

    def default_card(self, sub: dict[str, Any]) -> dict[str, Any] | None:
        customer = self.store.data["customers"][sub["customer"]]
        pm_id = sub["default_payment_method"] or customer["invoice_settings"]["default_payment_method"]
        return self.store.data["payment_methods"].get(pm_id or "")

    def fail_payment(self, sub: dict[str, Any], decline_code: str | None = None,
                     until_card_changes: bool = False) -> dict[str, Any]:
        """A charge fails (what a real account shows days later, on command): the open invoice's retry, or
        the next renewal's; declined as a test card with `decline_code` is (generic_decline by default).
        `until_card_changes`: every later charge of this invoice to the same default card is declined the
        same way (a bank that keeps refusing), until the customer's default card is another one."""
        invoice = self.store.data["invoices"].get(sub.get("latest_invoice") or "")
        if not (invoice and invoice["status"] == "open"):
            invoice = self.renew(sub, charge=False)
        outcome = decline_outcome(decline_code)
        if until_card_changes:
            pm = self.default_card(sub)
            invoice["_declined_for"] = [pm["id"] if pm else None, list(outcome)]
        self.attempt_payment(invoice, outcome)
        return invoice

    def retry_outcome(self, invoice: dict[str, Any], sub: dict[str, Any]) -> tuple[str, str | None, str] | None:
        """How a charge of an open invoice to the default card ends now (a retry, Pay now, a new card)."""
        pm = self.default_card(sub)
        declined_for = invoice.get("_declined_for")
        if declined_for and pm is not None and declined_for[0] == pm["id"]:
            return tuple(declined_for[1])  # type: ignore[return-value]
        return self.charge_outcome(pm) if pm else CHARGE_DECLINED

    def pay_invoice(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/invoices/{id}/pay: the open invoice charged now; a declined charge is a card error."""
        if invoice["status"] == "paid":
            raise invalid("Invoice is already paid", code="invoice_already_paid")
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(f"You can only pay an open or uncollectible invoice; this invoice is {invoice['status']}.",
                          code="invoice_not_open")
        sub = self.store.data["subscriptions"][invoice["parent"]["subscription_details"]["subscription"]]
        outcome = self.retry_outcome(invoice, sub)
        self.attempt_payment(invoice, outcome)
        if outcome is not None:
            code, decline_code, message = outcome
            raise card_error(message, code, decline_code)
        return invoice

    def mark_uncollectible(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/invoices/{id}/mark_uncollectible: an open invoice is written off (Stripe stops retrying)."""
        if invoice["status"] != "open":
            raise invalid(f"You can only mark an open invoice as uncollectible; this invoice is {invoice['status']}.",
                          code="invoice_not_open")
        invoice.update(status="uncollectible", next_payment_attempt=None, auto_advance=False)
        invoice["status_transitions"]["marked_uncollectible_at"] = int(time.time())
        self.emit("invoice.marked_uncollectible", invoice)
        return invoice

    def pay(self, sub: dict[str, Any]) -> dict[str, Any]:
        """The open invoice is paid (a retry went through, on command), else the next renewal is."""
        invoice = self.store.data["invoices"].get(sub.get("latest_invoice") or "")
        if not (invoice and invoice["status"] == "open"):
            invoice = self.renew(sub, charge=False)
        self.attempt_payment(invoice, None)
        return invoice


def merge_metadata(current: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """Stripe's metadata update: keys merge, an empty value unsets a key, an empty hash unsets all."""
    if update is None:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def apply_update(obj: dict[str, Any], fields: dict[str, Any], names: tuple[str, ...],
                 previous: dict[str, Any]) -> None:
    """Set each of `names` present in `fields` (and `metadata`, merged as Stripe merges it) on `obj`,
    noting the old value of each one that changed in `previous` (the event's previous_attributes)."""
    for name in names:
        if name in fields and fields[name] != obj[name]:
            previous[name] = obj[name]
            obj[name] = fields[name]
    if "metadata" in fields:
        before = dict(obj["metadata"])
        obj["metadata"] = merge_metadata(obj["metadata"], fields["metadata"])
        if obj["metadata"] != before:
            previous["metadata"] = before
