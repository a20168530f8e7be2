"""The composition root: a process's settings and the clients built from them, set once.

Each entry point (the web app factory, the `saas` command, a Celery worker or beat process, the
test harness) calls `configure(settings)`; after it the database engine, the Redis client, the
Celery broker and email rendering use those settings. Domain code never reads settings from
here: it takes the values it needs as arguments. Celery tasks, being entry points, read
`settings()`.
"""
from __future__ import annotations

from saas.core import db, mail, queue, redis_client
from saas.core.settings import Settings

_current: list[Settings] = []


def configure(settings: Settings) -> Settings:
    """Make `settings` this process's and bind every client to them; returns them."""
    _current[:] = [settings]
    if settings.database_url:  # a command that needs no database is given none (saas.cli)
        db.bind(settings.database_url, prepared_statements=settings.database_prepared_statements)
    if settings.redis_url:
        redis_client.bind(settings.redis_url)
    queue.bind(settings)
    mail.bind(app_url=settings.app_url, auto_reload=settings.env == "dev", mail_from=settings.mail_from)
    return settings


def settings() -> Settings:
    """This process's settings: those configure() was given, or, in a process started by
    `celery` (worker, beat), read from the environment on first use."""
    if not _current:
        configure(Settings.from_env())
    return _current[0]
