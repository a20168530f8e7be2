"""Test harness: real PostgreSQL, Redis and SMTP sink, started once per session by the suite."""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from saas.dev.embedded import MailSink, free_port, start_postgres, start_redis
from tests import factories
from tests.engines import start_pgbouncer
from tests.helpers import PASSWORD, SECRET_KEY


def pytest_collection_modifyitems(session, config, items):
    """Refuse a Celery task object at a test module's top level (`from x.tasks import some_task`): pytest's
    collection looks at every module attribute, which evaluates the task's proxy before the app is
    configured, and from then on the in-process test worker never starts (the suite hangs in the next
    test that asks for `celery_worker`). Import the module instead (`from scheduled import tasks`)."""
    from celery.local import Proxy

    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        for name, value in vars(module).items():
            if isinstance(type(value), type) and issubclass(type(value), Proxy):  # type(): no evaluation
                raise pytest.UsageError(f"{module.__name__} holds the Celery task {name!r} at module level: "
                                        "import its module instead (see tests/conftest.py)")


@pytest.fixture(scope="session")
def services():
    """Start (or reuse TEST_DATABASE_URL / TEST_REDIS_URL) the real parts and point settings at them."""
    workdir = Path(tempfile.mkdtemp(prefix="saas-tests-"))
    workdir.chmod(0o755)  # the embedded PostgreSQL user must be able to enter it when we are root
    started = []
    # postgres_url is PostgreSQL itself; db_url what the suite talks to (PgBouncer with TEST_PGBOUNCER).
    db_url = postgres_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        pg = start_postgres(workdir / "pg", free_port(), database="saas_test")
        started.append(pg)
        db_url = postgres_url = pg.url
        if os.environ.get("TEST_PGBOUNCER"):  # the whole suite through PgBouncer (tests/engines.py)
            bouncer = start_pgbouncer(workdir / "pgbouncer", free_port(), pg.url)
            started.append(bouncer)
            db_url = bouncer.url
            os.environ["DATABASE_PREPARED_STATEMENTS"] = "off"
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        rd = start_redis(workdir / "redis", free_port(), persist=False)
        started.append(rd)
        redis_url = rd.url
    sink = MailSink(workdir / "mail", free_port())
    os.environ.update(  # before the sink's thread starts: setenv() beside a thread reading the environment crashes
        SAAS_ENV="test", DATABASE_URL=db_url, REDIS_URL=redis_url, SMTP_URL=sink.url,
        DEV_MAILDIR=str(sink.maildir_path), APP_URL="http://127.0.0.1:5000",
        SECRET_KEY=SECRET_KEY, FINANCE_EMAILS="finance@example.com",
        ADMIN_EMAILS="admin@example.com",
        # Nothing listens there: a test that reaches Stripe before the emulator fixture is up fails fast
        # (a webhook handler then does without what it asked), never calls Stripe itself.
        STRIPE_API_BASE=f"http://127.0.0.1:{free_port()}",
    )
    sink.start()
    from saas.core import runtime
    from saas.core.db import reset_engines
    from saas.core.migrate import upgrade
    from saas.core.settings import Settings

    runtime.configure(Settings.from_env())  # as an entry point does; fixtures below replace fields
    upgrade(db_url)
    yield {"database_url": db_url, "postgres_url": postgres_url, "redis_url": redis_url, "mail": sink,
           "workdir": workdir}
    reset_engines()
    sink.stop()
    for service in reversed(started):
        service.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _truncate_all() -> None:
    """Empty every table but keep id sequences running: ids never repeat, as in production
    (Stripe idempotency keys derive from them, and the emulator lives for the whole session)."""
    from sqlalchemy import text

    from saas.core.db import get_engine
    from saas.schema import metadata

    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with get_engine().begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture(autouse=True)
def clean_state(request, services):
    """Every test starts with empty tables, an empty Redis (but its queue bindings) and an empty mailbox."""
    import redis

    from saas.core.db import web_session

    _truncate_all()
    client = redis.Redis.from_url(services["redis_url"])
    for key in client.scan_iter():  # keep kombu's queue bindings for the session's worker
        if not key.startswith(b"_kombu"):
            client.delete(key)
    services["mail"].clear()
    services["mail"].fail_next = 0
    from saas.web import limits

    limits._in_memory.storage.reset()  # the limits kept while Redis was unreachable
    from saas.core import runtime

    settings = runtime.settings()
    yield
    web_session.remove()
    if runtime.settings() is not settings:  # a test built an app or ran a command with other settings
        runtime.configure(settings)


@pytest.fixture
def settings(services):
    """The settings this test process runs with (what an entry point gave saas.core.runtime)."""
    from saas.core import runtime

    return runtime.settings()


@pytest.fixture
def with_settings(settings):
    """Settings with some fields replaced: with_settings(app_timezone=..., schedules=...)."""
    return lambda **changes: dataclasses.replace(settings, **changes)


@pytest.fixture
def today(settings):
    """Today in APP_TIMEZONE from the clock the product reads (`billing.records.local_today`), so a
    test that drives real processes (worker, emulator, browser) asserts on the day they see. CI runs
    the suite with every process's clock moved to fixed instants too (docs/development.md)."""
    from billing.records import local_today

    return local_today(settings.tz)


@pytest.fixture
def mail(services) -> MailSink:
    """The real SMTP sink every email of the suite reaches."""
    return services["mail"]


@pytest.fixture
def app(settings):
    from saas.web.app import create_app

    app = create_app(settings)
    app.config.update(WTF_CSRF_ENABLED=False)
    return app


@pytest.fixture
def csrf_app(settings):
    """An app with CSRF checks on, for the tests that prove them."""
    from saas.web.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def session(services):
    """A plain SQLAlchemy session for domain code; closed (not committed) after the test."""
    from saas.core.db import session_factory

    s = session_factory()()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def sent(monkeypatch):
    """Celery tasks the code under test enqueues, captured instead of sent: [(task name, kwargs)]."""
    from saas.core import queue

    calls = []
    monkeypatch.setattr(queue, "publish", lambda task, kwargs, countdown: calls.append((task.name, kwargs)))
    return calls


@pytest.fixture
def make_user(services):
    """Create a committed user: make_user(email='ana@example.com', role='subscriber', **columns)."""
    return factories.user


@pytest.fixture
def add(services):
    """Insert committed rows: add(Model, **columns) -> the row (detached)."""
    return factories.add


@pytest.fixture
def card(services):
    """card(user_id, exp_month, exp_year, **columns) -> a committed Card row."""
    return factories.card


@pytest.fixture
def subscription(services):
    return factories.subscription


@pytest.fixture
def invoice(services):
    return factories.invoice


class AuthActions:
    """Sign in and out through the real forms."""

    def __init__(self, client):
        self._client = client

    def login(self, email: str, password: str = PASSWORD):
        return self._client.post("/login", data={"email": email, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def celery_worker(services):
    """A real Celery worker (threads, in this process) consuming from the real Redis broker.

    Per test: a worker left running would race the tests that drive delivery by hand."""
    from celery.contrib.testing.worker import start_worker

    from scheduled.celery_app import app as celery_app

    celery_app.conf.update(broker_url=services["redis_url"])  # the worker consumes the suite's Redis
    with start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False,
                      shutdown_timeout=10, loglevel="WARNING") as worker:
        yield worker


@pytest.fixture(scope="session")
def live_server(services):
    """The Flask app (CSRF on) served by a real werkzeug server in a thread; returns its base URL."""
    import threading

    from werkzeug.serving import make_server

    from saas.core import runtime
    from saas.web.app import create_app

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    os.environ["APP_URL"] = base_url  # for the processes the suite starts (the emulator's links)
    app = services["live_app"] = create_app(dataclasses.replace(runtime.settings(), app_url=base_url))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield base_url
    server.shutdown()


class StripeEmulator:
    """The running `python -m billing.emulator`, and a helper to make it emit events on command."""

    def __init__(self, base_url: str, api_key: str, webhook_secret: str, log_path: Path | None = None):
        self.base_url, self.api_key, self.webhook_secret = base_url, api_key, webhook_secret
        self.log_path = log_path  # its stdout and stderr (what a failing wait prints the end of)

    def trigger(self, event_type: str, **params) -> dict:
        import requests

        response = requests.post(f"{self.base_url}/_emulator/trigger", data={"type": event_type, **params},
                                 headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10)
        response.raise_for_status()
        return response.json()

    def webhooks(self, **control) -> dict:
        """The emulator's webhook control (`drop_share`, `seed`): set it, and get its state back (the
        share, the ids dropped since it was set, the deliveries still pending)."""
        import requests

        response = requests.post(f"{self.base_url}/_emulator/webhooks", data=control,
                                 headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def stripe_emulator(services, live_server):
    """The Stripe emulator as a subprocess, webhooks to live_server; STRIPE_* settings point at it."""
    import subprocess
    import sys

    from saas.core import runtime
    from saas.dev.embedded import port_is_open, wait_for

    port, secret, key = free_port(), "whsec_test_emulator_secret", "sk_test_emulator"
    log_path = services["workdir"] / "stripe-emulator.log"
    proc = subprocess.Popen([sys.executable, "-m", "billing.emulator", "--port", str(port),
                             "--webhook-url", f"{live_server}/billing/webhooks/stripe", "--webhook-secret", secret,
                             "--data", str(services["workdir"] / "stripe.json")],
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    wait_for(lambda: port_is_open(port), "Stripe emulator", timeout=20, proc=proc)
    os.environ.update(STRIPE_API_BASE=f"http://127.0.0.1:{port}", STRIPE_SECRET_KEY=key, STRIPE_WEBHOOK_SECRET=secret)
    settings = runtime.configure(dataclasses.replace(
        runtime.settings(), stripe_api_base=f"http://127.0.0.1:{port}", stripe_secret_key=key,
        stripe_webhook_secrets=(secret,)))
    services["live_app"].config["SETTINGS"] = settings  # the live server verifies the emulator's webhooks
    yield StripeEmulator(f"http://127.0.0.1:{port}", key, secret, log_path)
    proc.terminate()
    proc.wait(timeout=10)
