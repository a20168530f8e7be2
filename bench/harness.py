"""The real parts for a benchmark run: PostgreSQL, Redis and an SMTP sink in a temporary directory.

Started the way tests/conftest.py starts them. The seeded database is kept as a template, and
each repetition works on a fresh copy of it (CREATE DATABASE ... TEMPLATE), so every run of a
job sees the same data.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psycopg
import redis

from bench.sink import start_sink
from saas.core import runtime
from saas.core.db import reset_engines
from saas.core.migrate import upgrade
from saas.core.settings import Settings
from saas.dev.embedded import ensure_database, free_port, start_postgres, start_redis

WORK_DB = "bench"
TEMPLATE_DB = "bench_seed"


class Harness:
    """Owns the services of one run; a context manager that stops them all."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix="saas-bench-"))
        self.workdir.chmod(0o755)  # the embedded PostgreSQL user must be able to enter it as root
        self.services: list = []
        self.sinks: list = []

    def __enter__(self) -> Harness:
        pg = start_postgres(self.workdir / "pg", free_port(), database=TEMPLATE_DB)
        self.services.append(pg)
        self.admin_url = pg.url.rsplit("/", 1)[0] + "/postgres"
        self.template_url = pg.url
        self.database_url = pg.url.rsplit("/", 1)[0] + "/" + WORK_DB
        rd = start_redis(self.workdir / "redis", free_port(), persist=False)
        self.services.append(rd)
        self.redis_url = rd.url
        self.smtp_port = free_port()
        self.maildir = self.workdir / "mail"
        self.sinks.append(start_sink(self.smtp_port, self.maildir))
        os.environ.update(
            SAAS_ENV="test", DATABASE_URL=self.template_url, REDIS_URL=self.redis_url,
            SMTP_URL=f"smtp://127.0.0.1:{self.smtp_port}", DEV_MAILDIR=str(self.maildir),
            APP_URL="http://127.0.0.1:5000", SECRET_KEY="bench-secret-key-0123456789",
            FINANCE_EMAILS="finance@example.com", ADMIN_EMAILS="admin@example.com",
        )
        self._reload()
        upgrade(self.template_url)
        return self

    def _reload(self) -> None:
        """Drop pooled connections and configure the process from the environment (as an entry point does)."""
        reset_engines()
        runtime.configure(Settings.from_env())

    def use_template(self) -> None:
        """Point DATABASE_URL at the template database (to seed it)."""
        os.environ["DATABASE_URL"] = self.template_url
        self._reload()

    def url_of(self, name: str) -> str:
        return self.template_url.rsplit("/", 1)[0] + "/" + name

    def create_database(self, name: str) -> str:
        """An empty, migrated database `name` (for a second data set, e.g. part 2's)."""
        ensure_database(self.admin_url, name)
        upgrade(self.url_of(name))
        return self.url_of(name)

    def fresh_copy(self, template: str = TEMPLATE_DB) -> str:
        """Replace the work database with a copy of `template`; point DATABASE_URL at it."""
        self._reload()  # no pooled connection may hold either database open
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{WORK_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{WORK_DB}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        os.environ["DATABASE_URL"] = self.database_url
        self._reload()
        return self.database_url

    def clear_redis(self) -> None:
        redis.Redis.from_url(self.redis_url).flushall()

    def __exit__(self, *exc) -> None:
        reset_engines()
        for proc in self.sinks:
            proc.terminate()
            proc.wait(10)
        for service in reversed(self.services):
            service.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
