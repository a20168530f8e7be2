"""Bench-only WSGI apps for gunicorn: the real app with CSRF off, and the two comparison endpoints.

- `create_bench_app()`: saas.web.app.create_app() with WTF_CSRF_ENABLED off (wrk cannot fetch a token
  per request). The rate limit stays ON: each wrk request carries a distinct X-Bench-Client header,
  which a bench-only WSGI wrapper copies into REMOTE_ADDR, so every request is a new visitor and
  still pays the limiter's Redis check. The app itself trusts no forwarding header.
- `create_floor_app()`: a minimal Flask app whose POST /enqueue only enqueues a Celery task (the
  floor), and whose POST /send-sync sends the email synchronously to BENCH_SLOW_SMTP_URL (what
  Celery saves the request path).
"""
from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage

from flask import Flask, request

from saas.core import runtime
from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import enqueue
from saas.core.settings import Settings
from saas.web.app import create_app


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


def create_floor_app():
    runtime.configure(Settings.from_env())  # the entry point: the broker is REDIS_URL's
    app = Flask("bench_floor")

    @app.post("/enqueue")
    def enqueue_delivery():
        enqueue(deliver_outbox)
        return "queued", 202

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
