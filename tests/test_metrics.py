"""Metrics: who may scrape, and the values a real gunicorn (2 workers) and a real prefork worker report."""
from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from billing.models import StripeEvent
from saas.core.db import session_scope
from saas.core.outbox.models import OutboxMessage
from saas.core.queue import app as celery_app
from saas.core.queue import enqueue
from saas.core.settings import ROOT, Settings, SettingsError
from saas.core.slots import latest_slot
from saas.dev.embedded import die_with_parent, free_port
from scheduled import clock, tasks
from scheduled.models import JobRun
from tests import factories
from tests.helpers import SECRET, HttpReceiver, signed, wait_until

TOKEN = "metrics-token-0123456789abcdef"


# Who may scrape --------------------------------------------------------------------------------

def _app(with_settings, **changes):
    from saas.web.app import create_app

    return create_app(with_settings(**changes)).test_client()


def test_metrics_are_not_served_when_nothing_allows_them(with_settings):
    client = _app(with_settings)
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer anything-at-all-here"}).status_code == 404


@pytest.mark.parametrize("remote, headers, status", [
    ("10.1.2.3", {}, 200),                                        # inside METRICS_ALLOW
    ("::ffff:10.1.2.3", {}, 200),                                 # the same address, IPv4-mapped
    ("127.0.0.1", {}, 403),                                       # outside it, no token
    ("127.0.0.1", {"Authorization": f"Bearer {TOKEN}"}, 200),     # the token from anywhere
    ("192.0.2.7", {"Authorization": f"bearer {TOKEN}"}, 200),
    ("127.0.0.1", {"Authorization": "Bearer wrong-token-0123456789"}, 403),
    ("127.0.0.1", {"Authorization": f"Basic {TOKEN}"}, 403),
])
def test_metrics_answer_allowed_addresses_and_the_bearer_token(with_settings, remote, headers, status):
    client = _app(with_settings, metrics_allow=(ipaddress.ip_network("10.0.0.0/8"),), metrics_token=TOKEN)
    response = client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == status
    if status == 200:
        assert response.mimetype == "text/plain" and b"saas_state_metrics_up 1.0" in response.data
    else:
        assert b"METRICS_ALLOW" in response.data


def test_metrics_answer_any_host_header_like_the_probes(with_settings):
    """Prometheus scrapes the container's own address, which is not APP_URL's host."""
    client = _app(with_settings, metrics_token=TOKEN)
    response = client.get("/metrics", headers={"Host": "10.0.0.5:8000", "Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize("env, message", [
    ({"METRICS_ALLOW": "10.0.0.0/8,not-an-address"}, "METRICS_ALLOW has a malformed address"),
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN is too short"),
    ({"METRICS_PORT": "9100"}, "METRICS_PORT needs METRICS_ALLOW or METRICS_TOKEN"),
    ({"METRICS_PORT": "70000", "METRICS_TOKEN": TOKEN}, "METRICS_PORT must be a TCP port"),
    ({"METRICS_PORT": "ninety", "METRICS_TOKEN": TOKEN}, "METRICS_PORT must be a whole number"),
])
def test_metrics_settings_are_checked(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**BASE_ENV, **env})


def test_metrics_settings_parse():
    settings = Settings.from_env({**BASE_ENV, "METRICS_ALLOW": "127.0.0.1/32, 10.0.0.0/8,::1",
                                  "METRICS_TOKEN": TOKEN, "METRICS_PORT": "9100"})
    assert [str(n) for n in settings.metrics_allow] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    assert (settings.metrics_token, settings.metrics_port) == (TOKEN, 9100)
    assert Settings.from_env(BASE_ENV).metrics_port == 0


BASE_ENV = {"SAAS_ENV": "test", "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0",
            "SMTP_URL": "smtp://h:25"}


# Real processes --------------------------------------------------------------------------------

def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=die_with_parent)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def scrape(url: str, token: str | None = TOKEN) -> dict[tuple[str, frozenset], float]:
    """One scrape, parsed: {(sample name, labels): value}."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def monitor():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def cluster(services, tmp_path, monitor):
    """A gunicorn with 2 gthread workers and a Celery worker with a 2-process prefork pool, each in
    multi-process mode in a directory of its own, from the suite's environment; the worker pings
    `monitor` (a local HTTP receiver) as each job runs."""
    web_port, worker_port = free_port(), free_port()
    base = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "METRICS_TOKEN": TOKEN,
            "STRIPE_WEBHOOK_SECRET": SECRET,
            # The worker's missed-slot watchdog looks back this far: no admin email muddles the outbox.
            "CATCHUP_WINDOW": "60s"}
    web = _start([sys.executable, "-m", "gunicorn", "saas.web.app:create_app()", "--config",
                  "python:saas.web.gunicorn_conf", "--bind", f"127.0.0.1:{web_port}", "--workers", "2",
                  "--worker-class", "gthread", "--threads", "2"],
                 {**base, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "web-metrics")}, tmp_path / "web.log")
    worker = _start([sys.executable, "-m", "celery", "-A", "scheduled", "worker", "--pool", "prefork",
                     "--concurrency", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                     "--hostname", "metrics@test"],
                    {**base, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "worker-metrics"),
                     "METRICS_PORT": str(worker_port), "HEARTBEAT_URL": monitor.base + "/hc/{job}/{event}"},
                    tmp_path / "worker.log")
    urls = {"web": f"http://127.0.0.1:{web_port}", "worker": f"http://127.0.0.1:{worker_port}/metrics",
            "web_pid": web.pid}
    try:
        wait_until(lambda: _answers(urls["web"] + "/healthz"), "gunicorn to answer", timeout=60)
        wait_until(lambda: _answers(urls["worker"], TOKEN), "the worker's metrics port", timeout=60)
        wait_until(lambda: _worker_consumes(worker), "the worker to consume", timeout=60)
        yield urls
    finally:
        _stop(worker)
        _stop(web)


def _answers(url: str, token: str | None = None) -> bool:
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(url, headers=headers, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _worker_consumes(worker: subprocess.Popen) -> bool:
    assert worker.poll() is None, "the worker exited"
    return bool(celery_app.control.ping(destination=["metrics@test"], timeout=1.0))


def test_a_real_gunicorn_and_a_real_worker_report_what_happened(cluster, monitor, make_user, card, settings):
    web, worker = cluster["web"], cluster["worker"]

    # Refused without the token, on both.
    assert requests.get(web + "/metrics", timeout=10).status_code == 403
    assert requests.get(web + "/metrics", headers={"Authorization": "Bearer not-the-token-at-all"},
                        timeout=10).status_code == 403
    assert requests.get(worker, timeout=10).status_code == 403

    # A job run on the worker: one card expiring in the slot's month, one email, delivered.
    slot = latest_slot(settings.schedules["flag-expiring-cards"], settings.tz, clock.now())
    local = slot.astimezone(settings.tz)
    card(make_user().id, local.month, local.year)
    enqueue(tasks.run_job, job="flag-expiring-cards", slot_iso=slot.isoformat())
    enqueue(tasks.run_job, job="no-such-job", slot_iso=slot.isoformat())  # a task that fails
    run = wait_until(lambda: _finished_run("flag-expiring-cards"), "the job's run")
    assert (run.status, run.changed, run.emails_queued) == ("succeeded", 1, 1)
    wait_until(lambda: _outbox_statuses() == ["sent"], "the card email to be sent")
    # The pool process that ran it pinged the dead-man's switch (the unknown job, never claimed, did not).
    wait_until(lambda: len(monitor.paths) >= 2, "the run's pings")
    assert monitor.paths == ["/hc/flag-expiring-cards/start", "/hc/flag-expiring-cards/success"]

    # A webhook to the web app: rejected, received, then a replay; the worker processes it once.
    event = factories.stripe_event("customer.created", {"id": "cus_metrics", "object": "customer"}, int(time.time()))
    assert requests.post(web + "/billing/webhooks/stripe", data=b"{}", timeout=10,
                         headers={"Stripe-Signature": "t=1,v1=bad"}).status_code == 400
    for _ in range(2):
        payload, headers = signed(event)
        assert requests.post(web + "/billing/webhooks/stripe", data=payload, headers=headers, timeout=10).ok
    wait_until(lambda: _processed(event["id"]), "the webhook to be processed")

    # The login limit (5 failed sign-ins per account a minute), through the real form and its CSRF token.
    refused = _fail_sign_ins_until_refused(web)
    assert refused == 1

    expected_worker = {
        ("saas_job_runs_total", (("job", "flag-expiring-cards"), ("status", "succeeded"))): 1.0,
        ("saas_job_rows_changed_total", (("job", "flag-expiring-cards"),)): 1.0,
        ("saas_job_rows_scanned_total", (("job", "flag-expiring-cards"),)): float(run.scanned),
        ("saas_job_emails_queued_total", (("job", "flag-expiring-cards"),)): 1.0,
        ("saas_job_run_duration_seconds_count", (("job", "flag-expiring-cards"),)): 1.0,
        ("saas_outbox_delivery_attempts_total", (("outcome", "sent"),)): 1.0,
        ("saas_celery_tasks_total", (("outcome", "succeeded"), ("task", "scheduled.tasks.run_job"))): 1.0,
        ("saas_celery_tasks_total", (("outcome", "failed"), ("task", "scheduled.tasks.run_job"))): 1.0,
        ("saas_webhook_processing_total", (("outcome", "processed"),)): 1.0,
        ("saas_webhook_processing_lag_seconds_count", (("type", "other"),)): 1.0,
    }

    def worker_values():
        samples = scrape(worker)
        return {key: value(samples, key[0], **dict(key[1])) for key in expected_worker}

    wait_until(lambda: worker_values() == expected_worker, "the worker's counters")  # task signals come last
    assert worker_values() == expected_worker

    # Outbox rows the state gauges count: two waiting 20 minutes (not due yet) and one failed.
    now = datetime.now(UTC)
    for i, status in enumerate(["pending", "pending", "failed"]):
        factories.add(OutboxMessage, idempotency_key=f"metrics:{i}", kind="test", to_addr="x@example.com",
                      template="contact", context={}, status=status, created_at=now - timedelta(minutes=20),
                      next_attempt_at=now + timedelta(days=1))

    scrapes = [scrape(web + "/metrics") for _ in range(6)]  # fresh connections: both workers answer some
    for samples in scrapes:
        assert value(samples, "saas_rate_limited_total", limit="login", rule="5 per minute") == 1.0
        assert value(samples, "saas_webhook_events_total", outcome="rejected") == 1.0
        assert value(samples, "saas_webhook_events_total", outcome="received") == 1.0
        assert value(samples, "saas_webhook_events_total", outcome="duplicate") == 1.0
        assert value(samples, "saas_outbox_messages", status="pending") == 2.0
        assert value(samples, "saas_outbox_messages", status="failed") == 1.0
        assert value(samples, "saas_outbox_messages", status="sending") == 0.0
        assert 20 * 60 <= value(samples, "saas_outbox_oldest_pending_age_seconds") < 60 * 60
        assert value(samples, "saas_job_last_success_timestamp_seconds", job="flag-expiring-cards") == \
            pytest.approx(run.finished_at.timestamp())
        assert value(samples, "saas_job_skipped_slots", job="flag-expiring-cards") == 0.0
        assert value(samples, "saas_state_metrics_up") == 1.0

    # Every gunicorn worker is killed and replaced: the counts they made are still there.
    children = _children(cluster["web_pid"])
    assert len(children) == 2
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: len(set(_children(cluster["web_pid"])) - set(children)) == 2, "gunicorn's new workers")
    wait_until(lambda: _answers(web + "/healthz"), "gunicorn to answer again")
    samples = scrape(web + "/metrics")
    assert value(samples, "saas_rate_limited_total", limit="login", rule="5 per minute") == 1.0
    assert value(samples, "saas_webhook_events_total", outcome="received") == 1.0
    print(_excerpt(requests.get(worker, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text,
                   requests.get(web + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).text))


def _finished_run(job: str) -> JobRun | None:
    with session_scope() as s:
        run = s.scalars(select(JobRun).where(JobRun.job == job, JobRun.status != "running")).first()
        if run is not None:
            s.expunge(run)
        return run


def _outbox_statuses() -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))


def _processed(event_id: str) -> bool:
    with session_scope() as s:
        return s.scalar(select(StripeEvent.processed_at).where(StripeEvent.id == event_id)) is not None


def _fail_sign_ins_until_refused(web: str) -> int:
    """Wrong passwords for one account until the limit answers 429 (a new minute may reset the
    window half way, so the number of tries is not fixed); returns how many 429s were seen."""
    browser = requests.Session()
    for _ in range(30):
        page = browser.get(web + "/login", timeout=10).text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
        assert token, page[:500]
        response = browser.post(web + "/login", timeout=10, data={
            "email": "nobody@example.com", "password": "wrong-password", "csrf_token": token[1] or token[2]})
        if response.status_code == 429:
            return 1
        assert response.status_code in (200, 400), response.status_code
    return 0


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _excerpt(*texts: str) -> str:
    keep = ("saas_job_runs_total", "saas_job_emails_queued_total", "saas_celery_tasks_total",
            "saas_outbox_delivery_attempts_total", "saas_rate_limited_total", "saas_webhook_events_total",
            "saas_outbox_messages{", "saas_outbox_oldest", "saas_job_last_success")
    return "\n".join(line for text in texts for line in text.splitlines()
                     if line.startswith(keep))
