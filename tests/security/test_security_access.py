"""Every route as anonymous, subscriber, finance and admin; CSRF on every POST but the webhook; cookie flags."""
from __future__ import annotations

import os
import re
import smtplib
from datetime import UTC, date, datetime
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from tests.security.access_table import ACCESS, PERSONAS, block, documented

VALUES = {"filename": "app.css", "name": "finance-summary", "case_id": "1", "action": "pause"}  # case 1: none


@pytest.fixture
def world(settings, app, make_user, mail, sent):
    """One persona per role and a real object behind every path parameter."""
    from billing import progress
    from billing.finance import FinanceReport, FinanceSummary
    from saas.core.accounts import make_reset_token
    from saas.core.models import User
    from saas.core.outbox import OutboxMessage, queue_email
    from scheduled.models import JobRun

    users = {role: make_user(email=f"{role}@example.com", role=role) for role in ("subscriber", "finance", "admin")}
    with session_scope() as s:
        queue_email(s, key="access:1", kind="welcome", to="subscriber@example.com", template="welcome",
                              context={"name": "Sub"}, user_id=users["subscriber"].id)
        report = FinanceReport(kind="revenue-churn", params={"start": "2026-01-01", "end": "2026-01-31"},
                               status="done", progress=100, csv="a,b\n1,2\n")
        summary = FinanceSummary(period="daily", period_start=date(2026, 1, 1), period_end=date(2026, 1, 1),
                                 figures={}, csv="a,b\n")
        run = JobRun(job="flag-expiring-cards", slot=datetime(2026, 1, 1, tzinfo=UTC), status="succeeded")
        s.add_all([report, summary, run])
        s.flush()
        message_id = s.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == "access:1"))
        ids = {"message_id": message_id, "report_id": report.id, "summary_id": summary.id, "run_id": run.id}
    with app.test_request_context(), session_scope() as s:
        ids["token"] = make_reset_token(s.get(User, users["subscriber"].id), settings.secret_key)
    ids["op_id"] = progress.new_operation(users["subscriber"].id, "card")
    note = EmailMessage()
    note["From"], note["To"], note["Subject"] = "a@example.com", "b@example.com", "hello"
    note.set_content("for the dev mail page")
    with smtplib.SMTP("127.0.0.1", mail.port) as smtp:
        smtp.send_message(note)
    ids["index"] = 0
    return users, {**VALUES, **{k: str(v) for k, v in ids.items()}}


def client_as(app, persona: str, users):
    """A client signed in as `persona` (Flask-Login keeps the user's session token in the session;
    read afresh, since signing out rotates it)."""
    from sqlalchemy import select

    from saas.core.db import session_scope
    from saas.core.models import User

    client = app.test_client()
    if persona != "anonymous":
        with session_scope() as s:
            token = s.scalar(select(User.session_token).where(User.id == users[persona].id))
        with client.session_transaction() as sess:
            sess["_user_id"] = token
            sess["_fresh"] = True
    return client


def fill(rule: str, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda m: values[m.group(1)], rule)


def answer(response) -> str:
    """The response as the table writes it."""
    if response.status_code in (301, 302, 303) and response.location.split("?")[0].endswith("/login"):
        return f"{response.status_code} → /login"
    return str(response.status_code)


def app_routes(app) -> set[tuple[str, str]]:
    return {(rule.rule, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_route_has_an_intended_answer_per_persona(app):
    """A new route fails here until ACCESS (and so the docs table) says who may use it."""
    assert app_routes(app) == set(ACCESS)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_route_answers_as_intended(app, world, persona):
    users, values = world
    column = PERSONAS.index(persona)
    wrong = []
    for (rule, method), answers in ACCESS.items():
        path = fill(rule, values)
        response = client_as(app, persona, users).open(path, method=method, data={} if method == "POST" else None)
        got = answer(response)
        response.close()
        if got != answers[column]:
            wrong.append(f"{method} {rule}: expected {answers[column]}, got {got}")
    assert wrong == []


def test_docs_hold_the_table_the_test_checks():
    """docs/reliability.md is generated from ACCESS; refresh it with `python -m tests.security.access_table`."""
    assert documented() == block(), "docs/reliability.md is out of date: run python -m tests.security.access_table"


def test_production_has_no_dev_routes(services):
    from saas.core.settings import Settings
    from saas.web.app import create_app

    prod = create_app(Settings.from_env({**os.environ, "SAAS_ENV": "production"}))
    assert not any(rule.startswith("/dev/") for rule, _ in app_routes(prod))
    assert app_routes(prod) == {key for key in ACCESS if not key[0].startswith("/dev/")}


# ---- CSRF -----------------------------------------------------------------------------------------

CSRF_MESSAGE = b"The form expired or was not sent from this site"


@pytest.mark.parametrize("persona", ["anonymous", "admin"])
def test_every_post_but_the_webhook_needs_a_csrf_token(csrf_app, world, persona):
    users, values = world
    posts = sorted(rule for rule, method in app_routes(csrf_app) if method == "POST")
    assert "/billing/webhooks/stripe" in posts and len(posts) > 10
    for rule in posts:
        if rule == "/billing/webhooks/stripe":
            continue
        response = client_as(csrf_app, persona, users).post(fill(rule, values), data={"email": "a@example.com"})
        assert response.status_code == 400 and CSRF_MESSAGE in response.data, rule


def test_a_form_with_its_token_passes_the_csrf_check(csrf_app):
    client = csrf_app.test_client()
    token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/login").data).group(1)
    response = client.post("/login", data={"csrf_token": token.decode(), "email": "x@example.com", "password": "y"})
    assert response.status_code == 400 and CSRF_MESSAGE not in response.data and b"Wrong email" in response.data


def test_the_webhook_is_exempt_from_csrf_and_answers_by_signature(with_settings, sent):
    import json
    import time

    from saas.web.app import create_app
    from tests.factories import stripe_event as event
    from tests.helpers import SECRET, signed

    csrf_app = create_app(with_settings(stripe_webhook_secrets=(SECRET,)))
    payload, headers = signed(event("customer.created", {"id": "cus_x"}, int(time.time())))
    client = csrf_app.test_client()
    assert client.post("/billing/webhooks/stripe", data=payload, headers=headers).status_code == 200
    unsigned = client.post("/billing/webhooks/stripe", data=json.dumps({"id": "evt_x"}),
                           headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400 and CSRF_MESSAGE not in unsigned.data


# ---- cookies --------------------------------------------------------------------------------------

def test_session_cookie_is_secure_httponly_samesite_in_production(services):
    from saas.core.settings import Settings
    from saas.web.app import create_app

    prod = create_app(Settings.from_env({**os.environ, "SAAS_ENV": "production"}))
    assert prod.config["SESSION_COOKIE_SECURE"] and prod.config["SESSION_COOKIE_HTTPONLY"]
    assert prod.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert prod.config["REMEMBER_COOKIE_SECURE"] and prod.config["REMEMBER_COOKIE_HTTPONLY"]
    response = prod.test_client().get("/login", base_url=os.environ["APP_URL"])  # the CSRF token sets the cookie
    cookie = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
    assert "secure" in flags and "httponly" in flags and flags["samesite"].lower() == "samesite=lax", cookie
