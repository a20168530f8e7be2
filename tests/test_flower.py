"""Flower against the product: `celery -A scheduled flower` sees a task a real worker ran (task
events are on in the Celery config) and its API asks for the basic-auth login."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import app as celery_app
from saas.core.queue import enqueue
from saas.core.settings import ROOT
from saas.dev.embedded import die_with_parent, free_port
from tests.helpers import wait_until

LOGIN = ("ops", "flower-test-password")


@pytest.fixture
def flower(services, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOWER_BASIC_AUTH": ":".join(LOGIN)}
    log = (tmp_path / "flower.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "scheduled", "flower", f"--port={port}",
                             "--address=127.0.0.1"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=die_with_parent)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        try:
            return requests.get(f"{base}/healthcheck", auth=LOGIN, timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, "flower to listen", timeout=90)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


def test_the_product_config_sends_task_events():
    assert celery_app.conf.worker_send_task_events and celery_app.conf.task_send_sent_event


def test_flower_shows_a_task_the_worker_ran(flower, celery_worker):
    assert requests.get(f"{flower}/api/tasks", timeout=10).status_code == 401  # never without the login

    def seen_succeeded() -> dict | None:
        # Flower hears events from the moment its receiver is up: queue a task until one is seen.
        enqueue(deliver_outbox)
        try:
            return wait_until(lambda: next((t for t in requests.get(
                f"{flower}/api/tasks", auth=LOGIN, params={"taskname": deliver_outbox.name}, timeout=10
            ).json().values() if t["state"] == "SUCCESS"), None), "the task in flower", timeout=5)
        except AssertionError:
            return None

    task = wait_until(seen_succeeded, "flower to report a task the worker ran", timeout=90)
    assert task["name"] == deliver_outbox.name and task["worker"] == celery_worker.hostname
    info = requests.get(f"{flower}/api/task/info/{task['uuid']}", auth=LOGIN, timeout=10).json()
    assert info["state"] == "SUCCESS" and info["received"] and info["succeeded"]
