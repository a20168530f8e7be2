"""Bench-only WSGI apps for gunicorn: the real app with CSRF off, and the two comparison endpoints.

- `create_bench_app()`: saas.web.app.create_app() with WTF_CSRF_ENABLED off (wrk cannot fetch a token
  per request). The rate limit stays ON: each wrk request carries a distinct X-Bench-Client header,
  which a bench-only WSGI wrapper copies into REMOTE_ADDR, so every request is a new visitor and
  still pays the limiter's Redis check. The app itself trusts no forwarding header.
- `create_floor_app()`: a minimal Flask app with the comparison endpoints:
  - POST /enqueue only enqueues a Celery task (the enqueue-only floor);
  - POST /contact-io does exactly the contact POST's I/O and nothing else (the same-I/O floor):
    one Redis round trip for the limit (INCR and EXPIRE in one pipeline), the same outbox
    INSERT ... ON CONFLICT DO NOTHING RETURNING id and COMMIT through a plain psycopg
    connection, one Celery publish, a 302;
  - GET /dashboard-sql runs the dashboard's SQL through psycopg (the user by session token, the
    default card and current subscription in one statement with two laterals, the recent
    invoices; in one transaction, committed) and renders the same template with the same banner
    rules (the same-queries floor). The token comes in a plain cookie: no signed session, no
    CSRF token (a fixed string), no login manager, no request hooks;
  - POST /send-sync sends the email synchronously to BENCH_SLOW_SMTP_URL (what Celery saves the
    request path).
"""
from __future__ import annotations

import os
import smtplib
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from types import SimpleNamespace

import psycopg
from flask import Flask, redirect, render_template, request
from psycopg.types.json import Jsonb

from billing.current import INVOICES_SHOWN, LIVE_STATUSES
from billing.models import Card, Invoice, Subscription
from billing.plans import PLANS
from billing.records import local_today
from saas.core import redis_client, runtime
from saas.core.models import User
from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import enqueue
from saas.core.settings import ROOT, Settings
from saas.web import filters
from saas.web.app import create_app
from saas.web.views.dashboard import banners_for


def _client_from_header(wsgi_app):
    def app(environ, start_response):
        client = environ.get("HTTP_X_BENCH_CLIENT")
        if client:
            environ["REMOTE_ADDR"] = client
        return wsgi_app(environ, start_response)

    return app


def create_bench_app():
    app = create_app()
    app.config.update(WTF_CSRF_ENABLED=False)
    app.wsgi_app = _client_from_header(app.wsgi_app)
    return app


def _columns(model) -> list[str]:
    return [c.name for c in model.__table__.columns]


USER_COLUMNS, CARD_COLUMNS, SUB_COLUMNS, INVOICE_COLUMNS = (
    _columns(User), _columns(Card), _columns(Subscription), _columns(Invoice))
# The dashboard's three statements, as a DBA would write them for psycopg (the same plans as the
# product's: the user by its unique session token, two laterals, the invoices' index).
USER_SQL = (f"SELECT {', '.join(USER_COLUMNS)} FROM users "
            "WHERE session_token = %s AND purged_at IS NULL")
CARD_AND_SUB_SQL = (
    f"SELECT {', '.join('card.' + c for c in CARD_COLUMNS)}, {', '.join('sub.' + c for c in SUB_COLUMNS)} "
    "FROM users "
    f"LEFT JOIN LATERAL (SELECT {', '.join(CARD_COLUMNS)} FROM cards WHERE user_id = %(uid)s "
    "  ORDER BY is_default DESC, created_at DESC, id DESC LIMIT 1) AS card ON true "
    f"LEFT JOIN LATERAL (SELECT {', '.join(SUB_COLUMNS)} FROM subscriptions WHERE user_id = %(uid)s "
    f"  ORDER BY status IN ({', '.join(repr(s) for s in LIVE_STATUSES)}) DESC, created_at DESC, id DESC LIMIT 1) "
    "  AS sub ON true "
    # the open dunning case, as the product's third lateral (billing.current.current_case_query)
    "LEFT JOIN LATERAL (SELECT id FROM dunning_cases WHERE user_id = %(uid)s AND status IN ('open', 'paused') "
    "  ORDER BY opened_at DESC, id DESC LIMIT 1) AS dcase ON true "
    "WHERE users.id = %(uid)s")
INVOICES_SQL = (f"SELECT {', '.join(INVOICE_COLUMNS)} FROM invoices WHERE user_id = %s "
                f"ORDER BY created_at DESC, id DESC LIMIT {INVOICES_SHOWN}")
OUTBOX_SQL = ("INSERT INTO outbox (idempotency_key, kind, to_addr, reply_to, user_id, template, context, "
              "attachments, status, attempts, created_at, next_attempt_at) "
              "VALUES (%s, 'contact', %s, %s, NULL, 'contact', %s, '[]', 'pending', 0, %s, %s) "
              "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id")


CHEAPEST = min(PLANS.values(), key=lambda plan: plan.amount_cents)


def _row(names: list[str], values) -> SimpleNamespace | None:
    return None if values[0] is None else SimpleNamespace(**dict(zip(names, values, strict=True)))


def _stub_routes(app: Flask) -> None:
    """The product's URLs under its endpoint names, so the templates' links build (the stubs are never called)."""
    def stub(**_):
        return "", 204

    for rule in create_app().url_map.iter_rules():
        if rule.endpoint != "static":
            app.add_url_rule(rule.rule, rule.endpoint, stub, methods=rule.methods)


def create_floor_app():
    settings = runtime.configure(Settings.from_env())  # the entry point: the broker is REDIS_URL's
    app = Flask("bench_floor", template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "saas" / "web" / "static"))
    app.config["SETTINGS"] = settings  # banners_for reads the expiry window from the app's settings
    filters.init_app(app)  # the same template filters as the product's
    _stub_routes(app)
    local = threading.local()  # one psycopg connection per gunicorn thread, opened on first use

    def connection() -> psycopg.Connection:
        if getattr(local, "conn", None) is None:
            local.conn = psycopg.connect(settings.database_url)
        return local.conn

    @app.post("/enqueue")
    def enqueue_delivery():
        enqueue(deliver_outbox)
        return "queued", 202

    @app.post("/contact-io")
    def contact_io():
        """The contact POST's I/O and nothing else."""
        form = request.form
        limit_key = f"LIMITS:floor/contact:ip:{request.headers.get('X-Bench-Client', request.remote_addr)}"
        pipe = redis_client.get().pipeline(transaction=False)
        pipe.incr(limit_key)
        pipe.expire(limit_key, 10)
        if pipe.execute()[0] > 1:
            return "too many", 429
        conn, now = connection(), datetime.now(UTC)
        context = {k: form.get(k, "") for k in ("name", "email", "subject", "message")}
        conn.execute(OUTBOX_SQL, (f"contact:floor:{form.get('submission', '')}", ", ".join(settings.admin_emails),
                                  form.get("email", ""), Jsonb(context), now, now)).fetchone()
        conn.commit()
        enqueue(deliver_outbox)
        return redirect("/contact/form", 302)

    @app.get("/dashboard-sql")
    def dashboard_sql():
        """The dashboard's three statements and its template, nothing else."""
        conn = connection()
        row = conn.execute(USER_SQL, (request.cookies.get("floor_token", ""),)).fetchone()
        if row is None:
            return "no such session", 403
        user = SimpleNamespace(is_authenticated=True, **dict(zip(USER_COLUMNS, row, strict=True)))
        both = conn.execute(CARD_AND_SUB_SQL, {"uid": user.id}).fetchone()
        card, subscription = _row(CARD_COLUMNS, both[:len(CARD_COLUMNS)]), _row(SUB_COLUMNS, both[len(CARD_COLUMNS):len(CARD_COLUMNS) + len(SUB_COLUMNS)])
        invoices = [_row(INVOICE_COLUMNS, r) for r in conn.execute(INVOICES_SQL, (user.id,))]
        conn.commit()
        update_url = "/billing/update_card"
        banners = banners_for(user, card, subscription, local_today(settings.tz), update_url, invoices)
        return render_template("dashboard.html", card=card, subscription=subscription, invoices=invoices,
                               banners=banners, update_card_url=update_url, current_user=user,
                               cheapest=CHEAPEST, csrf_token=lambda: "floor")

    @app.post("/send-sync")
    def send_sync():
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "billing@example.com", "support@example.com", "Contact"
        msg.set_content(request.form.get("message", ""))
        host, port = os.environ["BENCH_SLOW_SMTP_URL"].removeprefix("smtp://").split(":")
        with smtplib.SMTP(host, int(port), timeout=30) as conn:
            conn.send_message(msg)
        return "sent", 200

    return app
