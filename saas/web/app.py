"""The Flask app factory: extensions, blueprints, error handlers, commands."""
from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from saas.core import db, logs, runtime
from saas.core.settings import ROOT, Settings
from saas.web import activity, filters, input_guard, login, read_commit, security_headers, session_cookie
from saas.web.extensions import csrf, limiter
from saas.web.hosts import TrustedHosts
from saas.web.views import BLUEPRINTS, DEV_BLUEPRINTS
from saas.web.views.errors import init_app as init_errorhandlers


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from `settings` (default: read from the environment); they become the
    process's (saas.core.runtime), and views read them from the app (app_settings())."""
    if settings is None:  # the process's entry point (gunicorn "saas.web.app:create_app()"): its logs too
        settings = Settings.from_env()
        logs.configure(settings.log_format)
        logs.apply(settings.log_format, [*logging.getLogger("gunicorn.error").handlers,
                                         *logging.getLogger("gunicorn.access").handlers])
    settings = runtime.configure(settings)
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder="static")
    app.url_map.converters["int"] = DatabaseId
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        TESTING=settings.env == "test",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_SECURE=settings.is_production,
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    # Any other Host header answers 400 (saas.web.hosts); every absolute link is APP_URL + a path anyway.
    hosts = [settings.app_host] + ([] if settings.is_production else ["localhost", "127.0.0.1"])
    app.wsgi_app = TrustedHosts(app.wsgi_app, hosts)
    if settings.trusted_proxy_hops:
        # Behind N reverse proxies: take the client address and scheme from their headers, so
        # per-IP limits see visitors, not the proxy. With 0 no forwarding header is trusted.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    register_extensions(app)
    register_blueprints(app, settings)
    register_errorhandlers(app)
    return app


class DatabaseId(IntegerConverter):
    """`<int:…>` in every route: ids PostgreSQL's bigint can hold, so a longer one is a 404, not a 500."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


def register_extensions(app: Flask) -> None:
    session_cookie.init_app(app)
    db.init_app(app)
    login.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    filters.init_app(app)
    input_guard.init_app(app)
    security_headers.init_app(app)
    activity.init_app(app)
    read_commit.init_app(app)


def register_blueprints(app: Flask, settings: Settings) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    if settings.env in ("dev", "test"):
        for blueprint in DEV_BLUEPRINTS:
            app.register_blueprint(blueprint)


def register_errorhandlers(app: Flask) -> None:
    init_errorhandlers(app)
