"""A forged Host header cannot put another site in a link: other hosts answer 400, links come from APP_URL."""
from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.outbox import OutboxMessage


def _reset_links() -> list[str]:
    with session_scope() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "password-reset")).all()
        return [link for row in rows for link in re.findall(r"https?://\S+", row.render().text)]


def test_forged_host_is_refused_and_sends_nothing(client, make_user):
    make_user(email="victim@example.com")
    response = client.post("/password/forgot", data={"email": "victim@example.com"},
                           headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert _reset_links() == []


def test_reset_link_is_built_from_app_url(client, make_user):
    make_user(email="victim@example.com")
    assert client.post("/password/forgot", data={"email": "victim@example.com"}).status_code == 302
    [link] = _reset_links()
    assert link.startswith(os.environ["APP_URL"] + "/password/reset/")


@pytest.mark.parametrize("headers", [{"Host": "evil.example"}, {"Host": "localhost"},
                                     {"X-Forwarded-Host": "evil.example"}])
def test_production_answers_only_app_urls_host_even_behind_a_proxy(services, headers):
    from saas.core.settings import Settings
    from saas.web.app import create_app

    app_url = "https://billing.example.com"
    prod = create_app(Settings.from_env({**os.environ, "SAAS_ENV": "production", "APP_URL": app_url,
                                         "TRUSTED_PROXY_HOPS": "1"}))
    client = prod.test_client()
    assert client.get("/login", base_url=app_url).status_code == 200
    assert client.get("/login", base_url=app_url, headers=headers).status_code == 400


def test_health_probes_answer_any_host(services):
    """Orchestrators probe the container's own address."""
    from saas.core.settings import Settings
    from saas.web.app import create_app

    prod = create_app(Settings.from_env({**os.environ, "SAAS_ENV": "production",
                                         "APP_URL": "https://billing.example.com"}))
    assert prod.test_client().get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200


def test_security_headers_on_every_response_and_no_store_when_signed_in(client, make_user, auth):
    anonymous = client.get("/login")
    for name, value in (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                        ("Referrer-Policy", "strict-origin-when-cross-origin")):
        assert anonymous.headers[name] == value
    csp = anonymous.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    assert "Strict-Transport-Security" not in anonymous.headers  # plain-HTTP loopback in dev and test
    make_user(email="ana@example.com")
    auth.login("ana@example.com")
    assert client.get("/dashboard").headers["Cache-Control"] == "no-store"


def test_production_sends_hsts(services):
    from saas.core.settings import Settings
    from saas.web.app import create_app

    app_url = "https://billing.example.com"
    prod = create_app(Settings.from_env({**os.environ, "SAAS_ENV": "production", "APP_URL": app_url}))
    assert prod.test_client().get("/login", base_url=app_url).headers["Strict-Transport-Security"].startswith("max-age=")
