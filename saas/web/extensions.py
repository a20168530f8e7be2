"""Flask extensions, created unbound and initialised in the app factory; the app's settings."""
from __future__ import annotations

from datetime import date

from flask import Flask, current_app
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from billing.records import local_today
from saas.core import redis_url
from saas.core.settings import Settings

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"

csrf = CSRFProtect()



class RateLimitCounters:
    """Where the rate limits are counted: the `limits` library's fixed-window strategy on REDIS_URL.

    saas.web.limits counts every limit, in the view, before the work. Flask-Limiter's `Limiter`
    used to hold this strategy, and also ran three hooks of its own on every request (before,
    after, teardown) to look for limits declared on views, of which there are none: those hooks
    cost the dashboard about 5% of its CPU time (docs/benchmarks.md). The same library (`limits`,
    which Flask-Limiter is built on), the same storage and keys, no hooks.
    """

    limiter: FixedWindowRateLimiter

    def init_app(self, app: Flask) -> None:
        # limits' own redis+sentinel:// storage would log in to the Sentinels with the servers'
        # password; built on our client's pool it reaches Redis the way everything else does.
        pool = redis_url.connect(app.config["SETTINGS"].redis_url).connection_pool
        self.limiter = FixedWindowRateLimiter(RedisStorage("redis://", connection_pool=pool))

    def reset(self) -> None:
        """Clear every counter (tests)."""
        self.limiter.storage.reset()


# Bound to REDIS_URL in create_app (one object for every app of the process).
limiter = RateLimitCounters()


def app_settings() -> Settings:
    """The settings the running app was built with (create_app(settings)): how web code reads them."""
    return current_app.config["SETTINGS"]


def app_today() -> date:
    """Today in APP_TIMEZONE, the day pages judge cards, queues and reports by."""
    return local_today(app_settings().tz)
