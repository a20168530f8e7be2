"""Flower against the product: `celery -A scheduled flower` sees a task a real worker ran (task
events are on in the Celery config) and its API asks for the basic-auth login."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from saas.core.outbox import delivery  # the module: a task proxy at module level breaks the test worker
from saas.core.queue import app as celery_app
from saas.core.settings import ROOT
from saas.dev.embedded import die_with_parent, free_port
from tests.helpers import wait_until

LOGIN = ("ops", "flower-test-password")


def _celery(*args: str, env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "scheduled", *args], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)


@pytest.fixture
def cluster(services, tmp_path):
    """A worker and Flower, real processes, on a Redis database of their own (no other test's tasks)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWER_BASIC_AUTH": ":".join(LOGIN),
           "REDIS_URL": services["redis_url"].rsplit("/", 1)[0] + "/6"}
    log = (tmp_path / "cluster.log").open("w")
    procs = [_celery("flower", f"--port={port}", "--address=127.0.0.1", env=env, log=log),
             _celery("worker", "--pool", "solo", "--loglevel", "INFO", env=env, log=log)]
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert all(p.poll() is None for p in procs), (tmp_path / "cluster.log").read_text()
        try:
            return requests.get(f"{base}/healthcheck", auth=LOGIN, timeout=2).ok
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still starting
            return False

    try:
        wait_until(up, "flower to listen", timeout=90)
        yield base, env
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        log.close()


def test_the_product_config_sends_task_events():
    assert celery_app.conf.worker_send_task_events and celery_app.conf.task_send_sent_event


def test_flower_shows_a_task_the_worker_ran(cluster):
    base, env = cluster
    assert requests.get(f"{base}/api/tasks", timeout=10).status_code == 401  # never without the login

    def succeeded() -> dict | None:
        tasks = requests.get(f"{base}/api/tasks", auth=LOGIN, params={"taskname": delivery.deliver_outbox.name},
                             timeout=10).json()
        return next((t for t in tasks.values() if t["state"] == "SUCCESS"), None)

    def queue_one_and_look() -> dict | None:
        # Flower hears events from the moment its receiver is up: queue a task until one is seen.
        subprocess.run([sys.executable, "-m", "celery", "-A", "scheduled", "call", delivery.deliver_outbox.name],
                       env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
        try:
            return wait_until(succeeded, "the task in flower", timeout=10)
        except AssertionError:
            return None

    task = wait_until(queue_one_and_look, "flower to report a task the worker ran", timeout=150)
    assert task["name"] == delivery.deliver_outbox.name and task["worker"].startswith("celery@")
    info = requests.get(f"{base}/api/task/info/{task['uuid']}", auth=LOGIN, timeout=10).json()
    assert info["state"] == "SUCCESS" and info["received"] and info["succeeded"]
