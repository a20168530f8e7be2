"""The HTTP face of the emulator: Stripe's form-encoded API subset, the Checkout page, triggers."""
from __future__ import annotations

import json
import re
from functools import wraps
from typing import Any

from flask import Flask, Response, redirect, render_template_string, request

from billing.emulator.checkout import PAGE, read_card
from billing.emulator.objects import Account, ApiError, missing
from billing.emulator.store import Store, public


def decode_form(items) -> dict[str, Any]:
    """Stripe's bracket encoding (`items[0][price]=…`, `expand[0]=…`) back into dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in items:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: listify(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return listify(root)


def truthy(value: Any) -> bool:
    return str(value).lower() == "true"


def create_app(store: Store, account: Account) -> Flask:
    """The emulator's Flask app."""
    app = Flask(__name__)

    def api(fn):
        """Auth with a test key, decode params, replay idempotent POSTs, answer JSON or a Stripe error."""

        @wraps(fn)
        def wrapper(**kwargs):
            key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            try:
                if not key:
                    raise ApiError(401, "invalid_request_error", "You did not provide an API key.")
                if key.startswith(("sk_live_", "rk_live_")):
                    raise ApiError(401, "invalid_request_error", "The Stripe emulator refuses live keys.")
                params = decode_form(request.form.items(multi=True) if request.method != "GET"
                                     else request.args.items(multi=True))
                with store.lock:
                    idem = request.headers.get("Idempotency-Key")
                    slot = f"{key}|{request.method}|{request.path}|{idem}"
                    if request.method == "POST" and idem and slot in store.data["idempotency"]:
                        status, body = store.data["idempotency"][slot]
                        return Response(json.dumps(body), status, {"Idempotent-Replayed": "true"},
                                        mimetype="application/json")
                    try:
                        status, body = 200, expand(fn(params, **kwargs), params.get("expand") or [])
                    except ApiError as exc:
                        status, body = exc.status, exc.body
                    if request.method == "POST" and idem:
                        store.data["idempotency"][slot] = [status, body]
                    store.save()
            except ApiError as exc:
                status, body = exc.status, exc.body
            return Response(json.dumps(body), status, mimetype="application/json")

        return wrapper

    def expand(obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        obj = public(obj)
        for path in paths:
            node, fields = obj, path.split(".")
            for i, field in enumerate(fields):
                value = node.get(field) if isinstance(node, dict) else None
                if isinstance(value, str) and store.get(value) is not None:
                    node[field] = value = public(store.get(value))
                node = value
        return obj

    def customer(customer_id: str) -> dict[str, Any]:
        return account.need(customer_id, "customer", "customers")

    def subscription(sub_id: str) -> dict[str, Any]:
        return account.need(sub_id, "subscription", "subscriptions")

    @app.post("/v1/customers")
    @api
    def create_customer(p):
        return store.add({"id": store.new_id("cus"), "object": "customer", "email": p.get("email"),
                          "name": p.get("name"), "metadata": p.get("metadata", {}),
                          "invoice_settings": {"default_payment_method": None}})

    @app.get("/v1/customers/<customer_id>")
    @api
    def get_customer(p, customer_id):
        return customer(customer_id)

    @app.post("/v1/customers/<customer_id>")
    @api
    def update_customer(p, customer_id):
        cus = customer(customer_id)
        default = (p.get("invoice_settings") or {}).get("default_payment_method")
        if default:
            pm = account.need(default, "PaymentMethod", "payment_methods")
            if pm["customer"] != customer_id:
                raise ApiError(400, "invalid_request_error",
                               f"The PaymentMethod {default} is not attached to customer {customer_id}.")
            cus["invoice_settings"]["default_payment_method"] = default
        for field in ("email", "name"):
            if field in p:
                cus[field] = p[field]
        return cus

    @app.delete("/v1/customers/<customer_id>")
    @api
    def delete_customer(p, customer_id):
        cus = customer(customer_id)
        for sub in store.all("subscriptions"):
            if sub["customer"] == customer_id:
                account.cancel_now(sub)
        cus["deleted"] = True
        return {"id": customer_id, "object": "customer", "deleted": True}

    @app.post("/v1/payment_methods")
    @api
    def create_payment_method(p):
        card = p.get("card") or {}
        return account.create_card(card.get("number", ""), int(card.get("exp_month", 0)), int(card.get("exp_year", 0)))

    @app.get("/v1/payment_methods/<pm_id>")
    @api
    def get_payment_method(p, pm_id):
        return account.need(pm_id, "PaymentMethod", "payment_methods")

    @app.post("/v1/payment_methods/<pm_id>/attach")
    @api
    def attach_payment_method(p, pm_id):
        return account.attach(pm_id, p.get("customer", ""))

    @app.post("/v1/payment_methods/<pm_id>/detach")
    @api
    def detach_payment_method(p, pm_id):
        return account.detach(pm_id)

    @app.post("/v1/checkout/sessions")
    @api
    def create_checkout_session(p):
        if p.get("mode") != "setup":
            raise ApiError(400, "invalid_request_error", "The emulator supports mode=setup only.", param="mode")
        customer(p.get("customer", ""))
        seti = store.add({"id": store.new_id("seti"), "object": "setup_intent", "customer": p["customer"],
                          "status": "requires_payment_method", "payment_method": None, "usage": "off_session"})
        session_id = store.new_id("cs")
        return store.add({
            "id": session_id, "object": "checkout.session", "mode": "setup", "customer": p["customer"],
            "status": "open", "payment_status": "no_payment_required", "setup_intent": seti["id"],
            "client_reference_id": p.get("client_reference_id"), "success_url": p.get("success_url"),
            "cancel_url": p.get("cancel_url"), "url": f"{request.host_url}checkout/{session_id}",
        })

    @app.get("/v1/checkout/sessions/<session_id>")
    @api
    def get_checkout_session(p, session_id):
        return account.need(session_id, "checkout session", "checkout_sessions")

    @app.post("/v1/subscriptions")
    @api
    def create_subscription(p):
        items = p.get("items") or [{}]
        return account.create_subscription(p.get("customer", ""), items[0].get("price", ""),
                                           p.get("payment_behavior", "allow_incomplete"),
                                           p.get("default_payment_method"))

    @app.get("/v1/subscriptions/<sub_id>")
    @api
    def get_subscription(p, sub_id):
        return subscription(sub_id)

    @app.post("/v1/subscriptions/<sub_id>")
    @api
    def update_subscription(p, sub_id):
        sub = subscription(sub_id)
        if "default_payment_method" in p:
            sub["default_payment_method"] = p["default_payment_method"] or None
        if "cancel_at_period_end" in p:
            account.set_cancel_at_period_end(sub, truthy(p["cancel_at_period_end"]))
        return sub

    @app.delete("/v1/subscriptions/<sub_id>")
    @api
    def cancel_subscription(p, sub_id):
        return account.cancel_now(subscription(sub_id))

    @app.get("/v1/invoices")
    @api
    def list_invoices(p):
        rows = [i for i in store.all("invoices") if i["customer"] == p.get("customer", i["customer"])]
        rows.sort(key=lambda i: i["created"], reverse=True)
        limit = int(p.get("limit", 10))
        return {"object": "list", "url": "/v1/invoices", "has_more": len(rows) > limit,
                "data": [public(i) for i in rows[:limit]]}

    @app.post("/_emulator/fixtures/subscription")
    @api
    def place_subscription(p):
        """A subscription with its paid past, placed without events (the demo seed's history)."""
        try:
            periods = [(int(x["start"]), int(x["end"])) for x in p.get("periods") or []]
            canceled_at = int(p["canceled_at"]) if p.get("canceled_at") else None
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "invalid_request_error", "periods[i][start], periods[i][end] and canceled_at "
                           "must be Unix timestamps") from None
        sub = account.place_subscription(p.get("customer", ""), p.get("price", ""), periods, canceled_at)
        return {**sub, "invoice_ids": sub["_invoices"]}

    @app.post("/_emulator/trigger")
    @api
    def trigger(p):
        """Emit, on command, the events a real account sends on its own schedule."""
        kind = p.get("type", "")
        if kind == "payment_method.automatically_updated":
            pm = _payment_method_for(p)
            event = account.auto_update(pm, int(p.get("exp_month", 12)), int(p.get("exp_year", pm["card"]["exp_year"] + 3)),
                                        p.get("last4"))
            return {"object": "list", "data": [event["id"]]}
        if kind in ("invoice.payment_failed", "invoice.paid"):
            sub = _subscription_for(p)
            invoice = account.fail_payment(sub) if kind == "invoice.payment_failed" else account.pay(sub)
            return invoice
        raise ApiError(400, "invalid_request_error",
                       "type must be payment_method.automatically_updated, invoice.payment_failed or invoice.paid",
                       param="type")

    def _payment_method_for(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("payment_method"):
            return account.need(p["payment_method"], "PaymentMethod", "payment_methods")
        default = customer(p.get("customer", ""))["invoice_settings"]["default_payment_method"]
        return account.need(default, "PaymentMethod", "payment_methods")

    def _subscription_for(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("subscription"):
            return subscription(p["subscription"])
        subs = [s for s in store.all("subscriptions") if s["customer"] == p.get("customer") and s["status"] != "canceled"]
        if not subs:
            raise missing(p.get("customer", ""), "live subscription for customer")
        return max(subs, key=lambda s: s["created"])

    @app.route("/checkout/<session_id>", methods=["GET", "POST"])
    def checkout_page(session_id: str):
        """Stripe Checkout in setup mode: enter a card, land back on success_url."""
        with store.lock:
            session = store.data["checkout_sessions"].get(session_id)
            if session is None:
                return Response("This checkout session does not exist.", 404, mimetype="text/plain")
            if session["status"] != "open":
                return Response("This checkout session is already complete.", 410, mimetype="text/plain")
            cus = store.data["customers"][session["customer"]]
            error, form = None, request.form
            if request.method == "POST":
                try:
                    number, exp_month, exp_year = read_card(form)
                    pm = account.create_card(number, exp_month, exp_year, form.get("name", ""))
                except ApiError as exc:
                    error = exc.body["error"]["message"]
                except ValueError as exc:
                    error = str(exc)
                else:
                    account.attach(pm["id"], session["customer"])
                    seti = store.data["setup_intents"][session["setup_intent"]]
                    seti.update(status="succeeded", payment_method=pm["id"])
                    session["status"] = "complete"
                    account.emit("setup_intent.succeeded", seti)
                    account.emit("checkout.session.completed", session)
                    store.save()
                    return redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id), 303)
            html = render_template_string(PAGE, session=session, email=cus.get("email"), error=error, form=form)
            return html, 402 if error else 200

    return app
