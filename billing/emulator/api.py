"""The HTTP face of the emulator: Stripe's form-encoded API, the Checkout page, triggers.

Every API request goes through `serve`, which does what Stripe's API layer does, in its order:
the key (test keys only), the `Stripe-Version` (the pinned one; none means the account's default,
which is the pinned one too), the idempotency key (a replay answers the stored response with
`Idempotent-Replayed: true`; the key reused for another endpoint or other parameters is refused
with an `idempotency_error`), the parameters against the operation's definition (schema.py:
unknown, missing, empty, wrong type, outside the enum; a refusal here is not stored under the
idempotency key, as at Stripe), then the operation, `expand`, and a self-check of the response
against the definition of the returned object. Every response, errors and the Checkout page
included, carries a `Request-Id`.

A parameter Stripe accepts but the emulator does not model is refused with a message that says so
(`errors.not_emulated`), never silently ignored. The one-of rules that stripe-python's TypedDicts
cannot state (they mark every top-level parameter of these operations optional) are written here,
each with the sentence of Stripe's reference it comes from.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, redirect, render_template_string, request

from billing.emulator import errors, schema
from billing.emulator.checkout import AUTHENTICATE_PAGE, INVOICE_PAGE, PAGE, read_card
from billing.emulator.errors import ApiError, invalid, not_emulated
from billing.emulator.objects import ACCOUNT_NAME, Account, apply_update, test_card
from billing.emulator.pdf import invoice_document
from billing.emulator.store import Store, public

log = logging.getLogger(__name__)
LIST_PARAMS = {"limit", "starting_after", "ending_before", "expand"}
EVENT_RETENTION_SECONDS = 30 * 24 * 3600  # "Stripe retains events for 30 days" (events/list)


def in_range(value: int, created: int | dict[str, int] | None) -> bool:
    """A `created` filter: an exact timestamp, or a range of gt / gte / lt / lte (range_query_specs)."""
    if created is None:
        return True
    if isinstance(created, int):
        return value == created
    return (value > created.get("gt", value - 1) and value >= created.get("gte", value)
            and value < created.get("lt", value + 1) and value <= created.get("lte", value))


def decode_form(items) -> dict[str, Any]:
    """Stripe's bracket encoding (`items[0][price]=…`, `expand[]=…`) back into nested dicts (arrays
    stay dicts with digit keys until schema.parse_params knows the parameter is an array)."""
    root: dict[str, Any] = {}
    for key, value in items:
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not match:
            raise errors.unknown_parameter(key)
        parts = [match[1]] + re.findall(r"\[([^\[\]]*)\]", match[2])
        node = root
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if part == "":  # `expand[]=a&expand[]=b`
                part = str(len(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise invalid("Invalid string", _bracket(parts[:depth + 1]))
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise invalid("Invalid object", _bracket(parts[:depth + 1]))
                node = child
    return root


def _bracket(parts: list[str]) -> str:
    return parts[0] + "".join(f"[{p}]" for p in parts[1:])


def param_paths(value: Any, dotted: str = "", bracket: str = "") -> list[tuple[str, str]]:
    """(a.b.c, a[0][b][c]) for every leaf of the typed parameters: what `allowed` is matched against."""
    if isinstance(value, dict) and value:
        return [p for k, v in value.items()
                for p in param_paths(v, f"{dotted}.{k}" if dotted else k, f"{bracket}[{k}]" if bracket else k)]
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):
        return [p for i, v in enumerate(value) for p in param_paths(v, dotted, f"{bracket}[{i}]")]
    return [(dotted, bracket)]


def allowed_param(dotted: str, allowed: set[str]) -> bool:
    return any(dotted == a or dotted.startswith(a + ".") for a in allowed)


def create_app(store: Store, account: Account) -> Flask:
    """The emulator's Flask app."""
    app = Flask(__name__)

    @app.before_request
    def assign_request_id():
        g.request_id = store.request_id()
        account.base_url = request.host_url.rstrip("/")

    @app.after_request
    def stamp(response: Response) -> Response:
        response.headers["Request-Id"] = g.get("request_id") or store.request_id()
        if request.path.startswith("/v1/"):
            response.headers["Stripe-Version"] = schema.api_version()
        return response

    def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(json.dumps(body), status, headers or {}, mimetype="application/json")

    @app.errorhandler(404)
    @app.errorhandler(405)
    def unrecognized(exc):
        if not request.path.startswith("/v1/"):
            return Response("Not found.", 404, mimetype="text/plain")
        return json_response({"error": {
            "type": "invalid_request_error",
            "message": f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                       "https://stripe.com/docs or we can help at https://support.stripe.com/."}}, 404)

    def authenticate() -> str:
        header = request.headers.get("Authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not key:
            raise ApiError(401, "invalid_request_error",
                           "You did not provide an API key. You need to provide your API key in the Authorization "
                           "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').")
        if key.startswith(("sk_live_", "rk_live_")):
            raise ApiError(401, "invalid_request_error", "The Stripe emulator refuses live keys.")
        if not key.startswith(("sk_test_", "rk_test_")):
            raise ApiError(401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}{'*' * 8}")
        return key

    def serve(op_key: str, allowed: set[str], fn: Callable[..., Any], kwargs: dict[str, Any]) -> Response:
        method = request.method
        idem = request.headers.get("Idempotency-Key") if method == "POST" else None
        headers = {"Idempotency-Key": idem} if idem else {}
        try:
            key = authenticate()
            version = request.headers.get("Stripe-Version")
            if version and version != schema.api_version():
                raise invalid(f"The Stripe emulator speaks API version {schema.api_version()} (the one stripe-python "
                              f"pins) and was sent {version!r}.")
            if idem is not None and len(idem) > 255:
                raise invalid("Idempotency-Key must be at most 255 characters long.")
            raw = decode_form(request.form.items(multi=True) if method == "POST"
                              else request.args.items(multi=True))
            with store.lock:
                slot = f"{key}|{idem}" if idem else None
                fingerprint = json.dumps(raw, sort_keys=True)
                stored = store.data["idempotency"].get(slot) if slot else None
                if stored:
                    if stored["endpoint"] != f"{method} {request.path}":
                        raise ApiError(400, "idempotency_error",
                                       "Keys for idempotent requests can only be used for the same endpoint they "
                                       f"were first used for ('{stored['endpoint']}' vs '{method} {request.path}'). "
                                       f"Try using a key other than '{idem}' if you meant to execute a different "
                                       "request.")
                    if stored["params"] != fingerprint:
                        raise ApiError(400, "idempotency_error",
                                       "Keys for idempotent requests can only be used with the same parameters they "
                                       f"were first used with. Try using a key other than '{idem}' if you meant to "
                                       "execute a different request.")
                    return json_response(stored["body"], stored["status"], {
                        **headers, "Idempotent-Replayed": "true", "Original-Request": stored["request_id"]})
                params = schema.parse_params(op_key, raw)
                for dotted, bracket in param_paths(params):
                    if dotted and not allowed_param(dotted, allowed):
                        raise not_emulated(bracket, op_key)
                account.request = {"id": g.request_id, "idempotency_key": idem}
                try:
                    body = expand(op_key, fn(params, **kwargs), params.get("expand") or [])
                    status = 200
                    found = schema.response_problems(op_key, body)
                    if found:
                        log.error("response to %s does not match Stripe's definition: %s", op_key, found)
                        body, status = {"error": {"type": "api_error", "message": "The Stripe emulator built a "
                                                  "response that does not match Stripe's definition: "
                                                  + "; ".join(found[:10])}}, 500
                except ApiError as exc:
                    status, body = exc.status, exc.body
                finally:
                    account.request = {"id": None, "idempotency_key": None}
                if slot:
                    store.data["idempotency"][slot] = {"endpoint": f"{method} {request.path}", "params": fingerprint,
                                                       "status": status, "body": body, "request_id": g.request_id}
                store.save()
        except ApiError as exc:
            status, body = exc.status, exc.body
        return json_response(body, status, headers)

    def endpoint(op_key: str, allowed: set[str] = frozenset({"expand"})):
        """Register the handler of one operation ("POST /v1/customers/{customer}", as stripe-python writes it)."""
        method, path = op_key.split(" ", 1)
        schema.operation(op_key)  # fails at start if the schema does not know it
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)

        def register(fn):
            def view(**kwargs):
                return serve(op_key, set(allowed), fn, kwargs)

            app.add_url_rule(rule, f"{method} {rule}", view, methods=[method])
            return fn

        return register

    # Expansion ------------------------------------------------------------------------------------
    def expand(op_key: str, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        body = public(obj)
        response = schema.operation(op_key)["response"]
        for path in paths:
            if path.count(".") >= 4:
                raise invalid("You cannot expand more than 4 levels of a property.", "expand")
            if response["k"] == "list":
                if not path.startswith("data."):
                    raise invalid(f"This property cannot be expanded ({path}).")
                for item in body["data"]:
                    _expand(item, response["items"]["ref"], path[5:].split("."), path)
            elif body.get("deleted") is not True:
                _expand(body, response["ref"], path.split("."), path)
        return body

    def _expand(node: dict[str, Any], ref: str, segments: list[str], path: str) -> None:
        field = schema.defs()[ref]["fields"].get(segments[0])
        kinds = {a["k"]: a for a in field["alts"]} if field else {}
        value = node.get(segments[0])
        if "expandable" in kinds:
            if isinstance(value, str):
                target = store.get(value)
                if target is None:
                    raise invalid(f"The Stripe emulator cannot expand {path}: it holds no object {value}.", "expand")
                if target.get("_deleted"):
                    value = {"id": value, "object": target["object"], "deleted": True}
                else:
                    value = public(target)
                node[segments[0]] = value
            if isinstance(value, dict) and len(segments) > 1 and not value.get("deleted"):
                _expand(value, schema.resource(value["object"]), segments[1:], path)
            return
        if "object" in kinds and kinds["object"].get("ref") and len(segments) > 1:
            if isinstance(value, dict):
                _expand(value, kinds["object"]["ref"], segments[1:], path)
            return
        raise invalid(f"This property cannot be expanded ({path}).")

    # Lists --------------------------------------------------------------------------------------
    def page(rows: list[dict[str, Any]], p: dict[str, Any], url: str, collection: str, kind: str) -> dict[str, Any]:
        """One page of a list, newest first, with Stripe's cursors and has_more."""
        limit = p.get("limit", 10)
        if limit < 1:
            raise invalid("This value must be greater than or equal to 1.", "limit")
        if limit > 100:
            raise invalid("This value must be less than or equal to 100.", "limit")
        after, before = p.get("starting_after"), p.get("ending_before")
        if after and before:
            raise invalid("You may only specify one of these parameters: ending_before, starting_after.",
                          "ending_before", "parameters_exclusive")

        def order(obj: dict[str, Any]) -> tuple[int, int]:
            return obj["created"], obj.get("_seq", 0)

        rows = sorted(rows, key=order, reverse=True)
        if after or before:
            cursor_id = after or before
            cursor = store.data[collection].get(cursor_id)
            if cursor is None:
                raise errors.missing(cursor_id, kind, "starting_after" if after else "ending_before", 400)
            if after:
                rest = [r for r in rows if order(r) < order(cursor)]
                data, has_more = rest[:limit], len(rest) > limit
            else:
                rest = [r for r in rows if order(r) > order(cursor)]
                data, has_more = rest[-limit:], len(rest) > limit
        else:
            data, has_more = rows[:limit], len(rows) > limit
        return {"object": "list", "data": [public(r) for r in data], "has_more": has_more, "url": url}

    def live(collection: str) -> list[dict[str, Any]]:
        return [o for o in store.all(collection) if not o.get("_deleted")]

    # Customers ----------------------------------------------------------------------------------
    def customer(customer_id: str, param: str = "id") -> dict[str, Any]:
        return account.need(customer_id, "customer", "customers", param)

    @endpoint("POST /v1/customers", {"email", "name", "description", "phone", "metadata", "expand"})
    def create_customer(p):
        return account.create_customer(p)

    @endpoint("GET /v1/customers", {"email"} | LIST_PARAMS)
    def list_customers(p):
        rows = [c for c in live("customers") if "email" not in p or c["email"] == p["email"]]
        return page(rows, p, "/v1/customers", "customers", "customer")

    @endpoint("GET /v1/customers/{customer}")
    def get_customer(p, customer):
        cus = store.data["customers"].get(customer)
        if cus is not None and cus.get("_deleted"):
            return {"id": customer, "object": "customer", "deleted": True}
        return account.need(customer, "customer", "customers")

    @endpoint("POST /v1/customers/{customer}", {"email", "name", "description", "phone", "metadata",
                                                "invoice_settings.default_payment_method", "expand"})
    def update_customer(p, customer):
        return account.update_customer(account.need(customer, "customer", "customers"), p)

    @endpoint("DELETE /v1/customers/{customer}", set())
    def delete_customer(p, customer):
        return account.delete_customer(account.need(customer, "customer", "customers"))

    # Payment methods ------------------------------------------------------------------------------
    def payment_method(pm_id: str, param: str = "id") -> dict[str, Any]:
        return account.need(pm_id, "PaymentMethod", "payment_methods", param)

    @endpoint("POST /v1/payment_methods", {"type", "card.number", "card.exp_month", "card.exp_year", "card.cvc",
                                           "billing_details.name", "metadata", "expand"})
    def create_payment_method(p):
        if "type" not in p:
            raise errors.missing_parameter("type")
        if p["type"] != "card":
            raise not_emulated(f"type={p['type']}", "POST /v1/payment_methods")
        card = p.get("card")
        if card is None:
            raise errors.missing_parameter("card")
        for name in ("number", "exp_month", "exp_year"):
            if card.get(name) is None:
                raise errors.missing_parameter(f"card[{name}]")
        pm = account.create_card(card["number"], card["exp_month"], card["exp_year"],
                                 (p.get("billing_details") or {}).get("name"), card.get("cvc"))
        pm["metadata"] = {k: v for k, v in (p.get("metadata") or {}).items() if v is not None}
        return pm

    @endpoint("GET /v1/payment_methods", {"customer", "type"} | LIST_PARAMS)
    def list_payment_methods(p):
        if p.get("customer"):
            customer(p["customer"], "customer")
        rows = [m for m in live("payment_methods") if m["customer"] and
                (not p.get("customer") or m["customer"] == p["customer"]) and m["type"] == p.get("type", m["type"])]
        return page(rows, p, "/v1/payment_methods", "payment_methods", "PaymentMethod")

    @endpoint("GET /v1/payment_methods/{payment_method}")
    def get_payment_method(p, payment_method):
        return account.need(payment_method, "PaymentMethod", "payment_methods")

    @endpoint("POST /v1/payment_methods/{payment_method}/attach", {"customer", "expand"})
    def attach_payment_method(p, payment_method):
        pm = account.need(payment_method, "PaymentMethod", "payment_methods")
        if not p.get("customer"):  # "customer: The ID of the customer to which to attach the PaymentMethod."
            raise errors.missing_parameter("customer")  # (or customer_account, which the emulator does not model)
        return account.attach(pm, p["customer"])

    @endpoint("POST /v1/payment_methods/{payment_method}/detach")
    def detach_payment_method(p, payment_method):
        return account.detach(account.need(payment_method, "PaymentMethod", "payment_methods"))

    # Checkout -------------------------------------------------------------------------------------
    @endpoint("POST /v1/checkout/sessions", {"mode", "customer", "currency", "success_url", "cancel_url",
                                             "client_reference_id", "metadata", "ui_mode", "expand"})
    def create_checkout_session(p):
        if p.get("mode") != "setup":
            raise not_emulated(f"mode={p.get('mode', 'payment')}", "POST /v1/checkout/sessions")
        if p.get("ui_mode", "hosted_page") != "hosted_page":
            raise not_emulated(f"ui_mode={p['ui_mode']}", "POST /v1/checkout/sessions")
        # "currency: … Required in `setup` mode when `allowed_payment_method_types` is not set."
        if not p.get("currency"):
            raise errors.missing_parameter("currency")
        if not p.get("customer"):
            raise not_emulated("a session without customer", "POST /v1/checkout/sessions")
        return account.create_setup_session(customer(p["customer"], "customer"), p, request.host_url)

    @endpoint("GET /v1/checkout/sessions", {"customer", "status"} | LIST_PARAMS)
    def list_checkout_sessions(p):
        rows = [s for s in live("checkout_sessions") if s["customer"] == p.get("customer", s["customer"])
                and s["status"] == p.get("status", s["status"])]
        return page(rows, p, "/v1/checkout/sessions", "checkout_sessions", "checkout session")

    @endpoint("GET /v1/checkout/sessions/{session}")
    def get_checkout_session(p, session):
        return account.need(session, "checkout session", "checkout_sessions")

    @endpoint("POST /v1/checkout/sessions/{session}/expire")
    def expire_checkout_session(p, session):
        return account.expire_session(account.need(session, "checkout session", "checkout_sessions"))

    @endpoint("GET /v1/setup_intents/{intent}")
    def get_setup_intent(p, intent):
        return account.need(intent, "setupintent", "setup_intents")

    # Products and prices --------------------------------------------------------------------------
    @endpoint("POST /v1/products", {"id", "name", "active", "description", "metadata", "expand"})
    def create_product(p):
        if not p.get("name"):  # "name: The product's name, meant to be displayable to the customer."
            raise errors.missing_parameter("name")
        return account.create_product(p)

    @endpoint("GET /v1/products", {"active"} | LIST_PARAMS)
    def list_products(p):
        rows = [o for o in live("products") if "active" not in p or o["active"] == p["active"]]
        return page(rows, p, "/v1/products", "products", "product")

    @endpoint("POST /v1/products/{id}", {"name", "active", "description", "metadata", "expand"})
    def update_product(p, id):  # noqa: A002  (the path's own name)
        return account.update_product(account.need(id, "product", "products"), p)

    @endpoint("POST /v1/prices", {"currency", "unit_amount", "product", "recurring.interval",
                                  "recurring.interval_count", "lookup_key", "transfer_lookup_key", "nickname",
                                  "metadata", "active", "expand"})
    def create_price(p):
        if not p.get("currency"):  # "currency: Three-letter ISO currency code"
            raise errors.missing_parameter("currency")
        if not p.get("product"):  # "product: The ID of the Product that this Price will belong to." (or product_data)
            raise errors.missing_parameter("product")
        if "unit_amount" not in p:  # one of unit_amount, unit_amount_decimal, custom_unit_amount (per_unit)
            raise errors.missing_parameter("unit_amount")
        return account.create_price(p)

    @endpoint("GET /v1/prices", {"active", "product", "lookup_keys", "type"} | LIST_PARAMS)
    def list_prices(p):
        keys = p.get("lookup_keys")
        if keys is not None and len(keys) > 10:
            raise invalid("You may pass at most 10 lookup keys.", "lookup_keys")
        rows = [o for o in live("prices") if ("active" not in p or o["active"] == p["active"])
                and o["product"] == p.get("product", o["product"]) and o["type"] == p.get("type", o["type"])
                and (keys is None or o["lookup_key"] in keys)]
        return page(rows, p, "/v1/prices", "prices", "price")

    # Subscriptions --------------------------------------------------------------------------------
    def subscription(sub_id: str) -> dict[str, Any]:
        return account.need(sub_id, "subscription", "subscriptions")

    @endpoint("POST /v1/subscriptions", {"customer", "items.price", "items.quantity", "payment_behavior",
                                         "default_payment_method", "metadata", "expand"})
    def create_subscription(p):
        if not p.get("customer"):  # "customer: The identifier of the customer to subscribe." (or customer_account)
            raise errors.missing_parameter("customer")
        if not p.get("items"):  # "items: A list of up to 20 subscription items, each with an attached price."
            raise errors.missing_parameter("items")
        if len(p["items"]) > 1:
            raise not_emulated("items[1]", "POST /v1/subscriptions")
        item = p["items"][0]
        if not item.get("price"):
            raise errors.missing_parameter("items[0][price]")
        cus = customer(p["customer"], "customer")
        plan = account.catalog_plan(item["price"])
        if plan is None:
            raise errors.missing(item["price"], "price", "items[0][price]", 400)
        behavior = p.get("payment_behavior", "allow_incomplete")
        if behavior == "pending_if_incomplete":
            raise invalid("You can only pass `payment_behavior=pending_if_incomplete` when updating a subscription.",
                          "payment_behavior")
        pm_id = p.get("default_payment_method")
        if pm_id:
            pm = payment_method(pm_id, "default_payment_method")
            if pm["customer"] != cus["id"]:
                raise invalid(f"The customer does not have a payment method with the ID {pm_id}. The payment method "
                              "must be attached to the customer.", "default_payment_method", "resource_missing")
        sub = account.create_subscription(cus, plan, item.get("quantity") or 1, behavior, pm_id,
                                          p.get("metadata") or {})
        sub["default_payment_method"] = pm_id
        return sub

    @endpoint("GET /v1/subscriptions", {"customer", "status", "price"} | LIST_PARAMS)
    def list_subscriptions(p):
        status = p.get("status")  # by default, every status but canceled
        rows = [s for s in live("subscriptions") if s["customer"] == p.get("customer", s["customer"])
                and (status == "all" or (s["status"] == status if status else s["status"] != "canceled"))
                and (not p.get("price") or s["items"]["data"][0]["price"]["id"] == p["price"])]
        return page(rows, p, "/v1/subscriptions", "subscriptions", "subscription")

    @endpoint("GET /v1/subscriptions/{subscription_exposed_id}")
    def get_subscription(p, subscription_exposed_id):
        return subscription(subscription_exposed_id)

    def new_price(sub: dict[str, Any], items: list[dict[str, Any]], where: str, op_key: str) -> dict[str, Any]:
        """The price a one-item update moves the subscription's item to (`where`: `items` or its bracket form)."""
        if len(items) != 1:
            raise not_emulated(f"{where}[1]", op_key)
        item = items[0]
        if not item.get("id"):
            raise not_emulated(f"{where}[0] without id (adding an item)", op_key)
        if item["id"] != sub["items"]["data"][0]["id"]:
            raise errors.missing(item["id"], "subscription_item", f"{where}[0][id]", 400)
        if not item.get("price"):
            raise not_emulated(f"{where}[0] without price", op_key)
        if account.catalog_plan(item["price"]) is None:
            raise errors.missing(item["price"], "price", f"{where}[0][price]", 400)
        return store.data["prices"][item["price"]]

    def proration_at(sub: dict[str, Any], behavior: str | None, at: int | None, where: str, op_key: str) -> int:
        """When the change is prorated from: `proration_date`, "within the current subscription period", else now.
        Only `always_invoice` is emulated (the prorations invoiced and charged at once). `where`: the hash the
        two parameters are in ("" at the top level)."""

        def param(name: str) -> str:
            return f"{where}[{name}]" if where else name

        if behavior != "always_invoice":
            raise not_emulated(f"{param('proration_behavior')}={behavior or 'create_prorations'}", op_key)
        item = sub["items"]["data"][0]
        at = int(time.time()) if at is None else at
        if not item["current_period_start"] <= at < item["current_period_end"]:
            raise invalid("The proration_date must be within the current subscription period.",
                          param("proration_date"))
        return at

    @endpoint("POST /v1/subscriptions/{subscription_exposed_id}", {"cancel_at_period_end", "default_payment_method",
                                                                   "cancellation_details.comment",
                                                                   "cancellation_details.feedback", "items.id",
                                                                   "items.price", "proration_behavior",
                                                                   "proration_date", "payment_behavior",
                                                                   "metadata", "expand"})
    def update_subscription(p, subscription_exposed_id):
        op_key = "POST /v1/subscriptions/{subscription_exposed_id}"
        sub = subscription(subscription_exposed_id)
        if sub["status"] == "canceled" and set(p) - {"metadata", "expand", "cancellation_details"}:
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        if "cancellation_details" in p and "cancel_at_period_end" not in p:
            raise not_emulated("cancellation_details without cancel_at_period_end", op_key)
        price = new_price(sub, p["items"], "items", op_key) if "items" in p else None
        if price is None and ({"proration_behavior", "proration_date", "payment_behavior"} & set(p)):
            raise not_emulated("proration_behavior, proration_date or payment_behavior without items", op_key)
        payment_behavior = p.get("payment_behavior", "allow_incomplete")
        if payment_behavior not in ("allow_incomplete", "error_if_incomplete"):
            raise not_emulated(f"payment_behavior={payment_behavior}", op_key)
        at = proration_at(sub, p.get("proration_behavior"), p.get("proration_date"), "", op_key) if price else 0
        previous: dict[str, Any] = {}
        if "default_payment_method" in p and p["default_payment_method"] != sub["default_payment_method"]:
            pm_id = p["default_payment_method"]
            if pm_id and payment_method(pm_id, "default_payment_method")["customer"] != sub["customer"]:
                raise invalid(f"The customer does not have a payment method with the ID {pm_id}. The payment method "
                              "must be attached to the customer.", "default_payment_method", "resource_missing")
            previous["default_payment_method"] = sub["default_payment_method"]
            sub["default_payment_method"] = pm_id
        apply_update(sub, p, (), previous)
        if previous:
            account.emit("customer.subscription.updated", sub, previous)
        if price is not None:
            account.change_price(sub, price, at, payment_behavior)
        if "cancel_at_period_end" in p:
            account.set_cancel_at_period_end(sub, p["cancel_at_period_end"], p.get("cancellation_details"))
        return sub

    @endpoint("DELETE /v1/subscriptions/{subscription_exposed_id}")
    def cancel_subscription(p, subscription_exposed_id):
        return account.cancel_now(subscription(subscription_exposed_id))

    # Invoices and events --------------------------------------------------------------------------
    @endpoint("GET /v1/invoices", {"customer", "subscription", "status"} | LIST_PARAMS)
    def list_invoices(p):
        rows = [i for i in live("invoices") if i["customer"] == p.get("customer", i["customer"])
                and i["status"] == p.get("status", i["status"])
                and (not p.get("subscription")
                     or i["parent"]["subscription_details"]["subscription"] == p["subscription"])]
        return page(rows, p, "/v1/invoices", "invoices", "invoice")

    @endpoint("GET /v1/invoices/{invoice}")
    def get_invoice(p, invoice):
        return account.need(invoice, "invoice", "invoices")

    @endpoint("POST /v1/invoices/create_preview", {"customer", "subscription", "subscription_details.items.id",
                                                   "subscription_details.items.price",
                                                   "subscription_details.proration_behavior",
                                                   "subscription_details.proration_date", "expand"})
    def create_preview(p):
        """The invoice a price change of a subscription would make (no other preview is emulated)."""
        op_key = "POST /v1/invoices/create_preview"
        if not p.get("subscription"):
            raise not_emulated("a preview without subscription", op_key)
        sub = account.need(p["subscription"], "subscription", "subscriptions", "subscription")
        if p.get("customer") and p["customer"] != sub["customer"]:
            customer(p["customer"], "customer")
            raise invalid(f"The subscription {sub['id']} does not belong to the customer {p['customer']}.",
                          "subscription")
        if sub["status"] == "canceled":
            raise invalid("A canceled subscription has no upcoming invoice to preview.", "subscription")
        details = p.get("subscription_details") or {}
        if not details.get("items"):
            raise not_emulated("a preview without subscription_details[items] (the next renewal)", op_key)
        price = new_price(sub, details["items"], "subscription_details[items]", op_key)
        if price["id"] == sub["items"]["data"][0]["price"]["id"]:
            raise not_emulated("a preview that changes nothing (the next renewal)", op_key)
        at = proration_at(sub, details.get("proration_behavior"), details.get("proration_date"),
                          "subscription_details", op_key)
        return account.preview_change(sub, price, at)
    @endpoint("POST /v1/invoices/{invoice}/pay", {"expand", "off_session"})
    def pay_invoice(p, invoice):
        """Charge an open invoice now (a retry out of Stripe's schedule): paid, or 402 with the card's error
        and the invoice's payment_failed (and payment_action_required) events, as Stripe answers it."""
        return account.pay_invoice(account.need(invoice, "invoice", "invoices", "invoice"))

    @endpoint("POST /v1/invoices/{invoice}/mark_uncollectible")
    def mark_uncollectible(p, invoice):
        return account.mark_uncollectible(account.need(invoice, "invoice", "invoices", "invoice"))

    @endpoint("GET /v1/invoice_payments", {"invoice", "status"} | LIST_PARAMS)
    def list_invoice_payments(p):
        rows = [i for i in live("invoice_payments") if i["invoice"] == p.get("invoice", i["invoice"])
                and i["status"] == p.get("status", i["status"])]
        return page(rows, p, "/v1/invoice_payments", "invoice_payments", "invoice payment")

    @endpoint("GET /v1/events", {"type", "types", "created"} | LIST_PARAMS)
    def list_events(p):
        """"List events, going back up to 30 days": older events are not listed (nor retrievable)."""
        if "type" in p and "types" in p:
            raise invalid("You may only specify one of these parameters: type, types.", "type", "parameters_exclusive")
        kinds = p.get("types") or ([p["type"]] if "type" in p else None)

        def matches(kind: str) -> bool:
            return kinds is None or any(kind == k or (k.endswith(".*") and kind.startswith(k[:-1])) for k in kinds)

        rows = [e for e in retained_events() if matches(e["type"]) and in_range(e["created"], p.get("created"))]
        return page(rows, p, "/v1/events", "events", "event")

    def retained_events() -> list[dict[str, Any]]:
        oldest = int(time.time()) - EVENT_RETENTION_SECONDS
        return [e for e in store.all("events") if e["created"] >= oldest]

    @endpoint("GET /v1/events/{id}")
    def get_event(p, id):
        event = account.need(id, "event", "events")
        if event["created"] < int(time.time()) - EVENT_RETENTION_SECONDS:
            raise errors.missing(id, "event", "id", 404)
        return event

    # The emulator's own endpoints (not Stripe's) ---------------------------------------------------
    def internal(fn):
        """Auth and form decoding only: fixtures and triggers are not Stripe operations."""

        def view():
            try:
                authenticate()
                with store.lock:
                    account.request = {"id": None, "idempotency_key": None}  # automatic, as at Stripe
                    body = public(fn(decode_form(request.form.items(multi=True))))
                    store.save()
                return json_response(body)
            except ApiError as exc:
                return json_response(exc.body, exc.status)

        view.__name__ = fn.__name__
        return view

    def place_subscription(p):
        """A subscription with its paid past, placed without events (the demo seed's history)."""
        try:
            given = p.get("periods") or {}
            periods = [(int(given[k]["start"]), int(given[k]["end"])) for k in sorted(given, key=int)]
            canceled_at = int(p["canceled_at"]) if p.get("canceled_at") else None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise invalid("periods[i][start], periods[i][end] and canceled_at must be Unix timestamps") from None
        sub = account.place_subscription(p.get("customer", ""), p.get("price", ""), periods, canceled_at,
                                         last_failed=p.get("last_failed") == "true")
        return {**sub, "invoice_ids": sub["_invoices"]}

    def trigger(p):
        """Emit, on command, the events a real account sends on its own schedule."""
        kind = p.get("type", "")
        if kind == "payment_method.automatically_updated":
            pm = _payment_method_for(p)
            event = account.auto_update(pm, int(p.get("exp_month", 12)),
                                        int(p.get("exp_year", pm["card"]["exp_year"] + 3)), p.get("last4"))
            return {"object": "list", "data": [event["id"]]}
        if kind in ("invoice.payment_failed", "invoice.paid"):
            sub = _subscription_for(p)
            if kind == "invoice.payment_failed":
                return account.fail_payment(sub, p.get("decline_code") or None,
                                            until_card_changes=p.get("until_card_changes") == "true")
            return account.pay(sub)
        if kind == "subscription.renewal":
            return account.renew(_subscription_for(p))
        raise invalid("type must be payment_method.automatically_updated, invoice.payment_failed, invoice.paid or "
                      "subscription.renewal", "type")

    def webhooks(p):
        """The webhook sender's control: POST drop_share (0 to 1) and an optional seed to lose that share
        of deliveries from now on (the events stay in GET /v1/events); GET or POST answers the state:
        the share, the ids dropped since it was set, and how many deliveries are still pending."""
        if "drop_share" in p:
            try:
                share = float(p["drop_share"])
                seed = int(p["seed"]) if p.get("seed") not in (None, "") else None
            except (TypeError, ValueError):
                raise invalid("drop_share must be a number from 0 to 1 and seed a whole number", "drop_share") from None
            if not 0 <= share <= 1:
                raise invalid("drop_share must be from 0 to 1", "drop_share")
            account.sender.drop(share, seed)
        return account.sender.status()

    app.add_url_rule("/_emulator/fixtures/subscription", "fixtures", internal(place_subscription), methods=["POST"])
    app.add_url_rule("/_emulator/trigger", "trigger", internal(trigger), methods=["POST"])
    app.add_url_rule("/_emulator/webhooks", "webhooks", internal(webhooks), methods=["GET", "POST"])

    def _payment_method_for(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("payment_method"):
            return payment_method(p["payment_method"])
        default = customer(p.get("customer", ""))["invoice_settings"]["default_payment_method"]
        return payment_method(default)

    def _subscription_for(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("subscription"):
            return subscription(p["subscription"])
        subs = [s for s in store.all("subscriptions") if s["customer"] == p.get("customer") and s["status"] != "canceled"]
        if not subs:
            raise errors.missing(p.get("customer", ""), "live subscription for customer")
        return max(subs, key=lambda s: (s["created"], s["_seq"]))

    # The Checkout page ----------------------------------------------------------------------------
    def open_session(session_id: str) -> tuple[dict[str, Any] | None, Response | None]:
        session = store.data["checkout_sessions"].get(session_id)
        if session is None:
            return None, Response("This checkout session does not exist.", 404, mimetype="text/plain")
        if session["status"] != "open":
            return None, Response("This checkout session is no longer open.", 410, mimetype="text/plain")
        return session, None

    def finish(session: dict[str, Any], pm: dict[str, Any]) -> Response:
        account.complete_setup(session, pm)
        store.save()
        if not session["success_url"]:
            return Response("Your card is saved. You can close this page.", 200, mimetype="text/plain")
        return redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]), 303)

    @app.route("/checkout/<session_id>", methods=["GET", "POST"])
    def checkout_page(session_id: str):
        """Stripe Checkout in setup mode: enter a card (authenticate it if the card asks), land on success_url."""
        with store.lock:
            session, closed = open_session(session_id)
            if closed:
                return closed
            cus = store.data["customers"][session["customer"]]
            error, form = None, request.form
            if request.method == "POST":
                account.request = {"id": g.request_id, "idempotency_key": None}
                try:
                    number, exp_month, exp_year = read_card(form)
                    pm = account.create_card(number, exp_month, exp_year, form.get("name", ""), form.get("cvc"))
                    card = test_card(number)
                    if card.decline:
                        code, decline_code, message = card.decline
                        exc = errors.card_error(message, code, decline_code)
                        account.fail_setup(session, pm, exc)
                        raise exc
                    if card.setup_authentication:
                        session["_authenticating"] = pm["id"]
                        seti = store.data["setup_intents"][session["setup_intent"]]
                        seti.update(status="requires_action", payment_method=pm["id"], next_action=schema.complete(
                            "stripe._setup_intent:SetupIntent.NextAction", {"type": "use_stripe_sdk",
                                                                            "use_stripe_sdk": {}}))
                        account.emit("setup_intent.requires_action", seti)
                        store.save()
                        return render_template_string(AUTHENTICATE_PAGE, session=session, last4=number[-4:])
                    return finish(session, pm)
                except ApiError as exc:
                    error = exc.body["error"]["message"]
                except ValueError as exc:
                    error = str(exc)
                finally:
                    account.request = {"id": None, "idempotency_key": None}
                store.save()
            html = render_template_string(PAGE, session=session, email=cus.get("email"), error=error, form=form)
            return html, 402 if error else 200

    @app.route("/invoice/<invoice_id>", methods=["GET", "POST"])
    def hosted_invoice(invoice_id: str):
        """The invoice's hosted page (hosted_invoice_url): its amount and status, and for an open invoice a
        button that confirms the payment (the test bank's authentication always succeeds here)."""
        with store.lock:
            invoice = store.data["invoices"].get(invoice_id)
            if invoice is None:
                return Response("This invoice does not exist.", 404, mimetype="text/plain")
            if request.method == "POST" and invoice["status"] == "open":
                account.request = {"id": g.request_id, "idempotency_key": None}
                try:
                    account.confirm_invoice_payment(invoice)
                finally:
                    account.request = {"id": None, "idempotency_key": None}
                store.save()
            return render_template_string(INVOICE_PAGE, invoice=invoice)

    @app.get("/invoice/<invoice_id>/pdf")
    def invoice_pdf(invoice_id: str):
        """The invoice's PDF (invoice_pdf): one page with its number, amount and status."""
        with store.lock:
            invoice = store.data["invoices"].get(invoice_id)
            if invoice is None:
                return Response("This invoice does not exist.", 404, mimetype="text/plain")
            return Response(invoice_document(invoice, ACCOUNT_NAME), 200, mimetype="application/pdf",
                            headers={"Content-Disposition": f'inline; filename="{invoice["number"]}.pdf"'})

    @app.post("/checkout/<session_id>/authenticate")
    def checkout_authenticate(session_id: str):
        """The test 3D Secure page's answer: complete, or fail (the session stays open for another card)."""
        with store.lock:
            session, closed = open_session(session_id)
            if closed:
                return closed
            pm = store.data["payment_methods"].get(session.pop("_authenticating", None) or "")
            if pm is None:
                return redirect(f"/checkout/{session_id}", 303)
            account.request = {"id": g.request_id, "idempotency_key": None}
            try:
                if request.form.get("outcome") == "complete":
                    return finish(session, pm)
                exc = errors.card_error("We are unable to authenticate your payment method. Please choose a different "
                                        "payment method and try again.", "setup_intent_authentication_failure")
                account.fail_setup(session, pm, exc)
                store.save()
            finally:
                account.request = {"id": None, "idempotency_key": None}
            cus = store.data["customers"][session["customer"]]
            html = render_template_string(PAGE, session=session, email=cus.get("email"),
                                          error=exc.body["error"]["message"], form={})
            return html, 402

    return app
