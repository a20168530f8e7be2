"""LOG_FORMAT=json: a real worker runs a job and a real gunicorn serves, and every line of their
logs is a JSON object."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import requests
from sqlalchemy import select

from saas.core.db import session_scope
from saas.core.settings import ROOT
from saas.dev.embedded import die_with_parent, free_port
from scheduled.models import JobRun
from tests.helpers import wait_until

SLOT = "2025-05-10T00:00:00+00:00"


def _celery(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "scheduled", *args], env=env, cwd=ROOT,
                            preexec_fn=die_with_parent, **kwargs)


def test_a_worker_logs_one_json_object_per_line_with_the_run(services, tmp_path):
    # Its own Redis database: the worker takes no task another test left queued.
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT),
           "REDIS_URL": services["redis_url"].rsplit("/", 1)[0] + "/7"}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = _celery("worker", "--pool", "solo", "--loglevel", "INFO", "--without-heartbeat",
                         "--without-mingle", "--without-gossip", env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        subprocess.run([sys.executable, "-m", "celery", "-A", "scheduled", "call", "scheduled.tasks.run_job",
                        "--kwargs", json.dumps({"job": "flag-expiring-cards", "slot_iso": SLOT})],
                       env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)

        def finished() -> JobRun | None:
            with session_scope() as s:
                return s.scalars(select(JobRun).where(JobRun.job == "flag-expiring-cards",
                                                      JobRun.status == "succeeded")).first()

        run = wait_until(finished, "the worker to run the slot", timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses, or this fails naming it
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records), lines
    in_run = [r for r in records if r.get("run_id") == run.id]
    assert in_run and all(r["job"] == "flag-expiring-cards" and r["slot"] == SLOT for r in in_run)
    assert any("succeeded" in r["message"] and r["level"] == "INFO" for r in in_run)
    assert any(r["logger"].startswith("celery") for r in records)  # Celery's own lines too


def test_gunicorn_logs_json_lines_master_included(services, tmp_path):
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONPATH": str(ROOT), "APP_URL": f"http://127.0.0.1:{port}"}
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "saas.web.app:create_app()", "--bind",
                                f"127.0.0.1:{port}", "--workers", "1", "--access-logfile", "-",
                                "--logger-class", "saas.web.gunicorn_logger.Logger"],
                               env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its worker still importing
                return False

        wait_until(answers, "gunicorn to serve", timeout=60)
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(30)
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers
    assert any("Starting gunicorn" in r["message"] for r in records)  # the master's own lines
    assert any("GET /healthz" in r["message"] for r in records if r["logger"] == "gunicorn.access")
