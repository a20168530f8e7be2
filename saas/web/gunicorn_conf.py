"""Gunicorn's hooks for the metrics' multi-process mode: `gunicorn --config python:saas.web.gunicorn_conf …`.

The master empties PROMETHEUS_MULTIPROC_DIR as it starts and reports each worker that exits, so a
scrape of any worker sums every live and past worker's counters (saas.core.metrics).
"""
from __future__ import annotations

from saas.core import metrics


def on_starting(server) -> None:
    metrics.reset_multiprocess_dir()


def child_exit(server, worker) -> None:
    metrics.mark_process_dead(worker.pid)
