"""A worker's metrics: Celery task outcomes, and the HTTP port (METRICS_PORT) Prometheus scrapes.

The port is served by the worker's main process, from worker_init, before the pool starts. With
the prefork pool the tasks run in child processes: with PROMETHEUS_MULTIPROC_DIR set (as the
image does) each child writes its counters to that directory and the main process's scrape
merges them; without it, only a solo or threads pool's counts are seen, and the worker says so.
The same guard as the web app's /metrics applies (METRICS_ALLOW or a METRICS_TOKEN bearer).
"""
from __future__ import annotations

import logging
import os
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery.signals import task_failure, task_retry, task_success, worker_init, worker_process_shutdown

from saas.core import metrics, runtime
from saas.core.settings import Settings

log = logging.getLogger(__name__)


@task_success.connect
def _succeeded(sender=None, **_kwargs) -> None:
    metrics.CELERY_TASKS.labels(_name(sender), "succeeded").inc()


@task_failure.connect
def _failed(sender=None, **_kwargs) -> None:
    metrics.CELERY_TASKS.labels(_name(sender), "failed").inc()


@task_retry.connect
def _retried(sender=None, **_kwargs) -> None:
    metrics.CELERY_TASKS.labels(_name(sender), "retried").inc()


def _name(task) -> str:
    return getattr(task, "name", None) or "unknown"


@worker_process_shutdown.connect
def _child_exited(pid=None, **_kwargs) -> None:
    """A pool child is leaving: its live gauges go with it (counters stay counted)."""
    metrics.mark_process_dead(pid or os.getpid())


@worker_init.connect
def _serve_metrics(**_kwargs) -> None:
    """Empty the multi-process directory of a previous run, then serve METRICS_PORT if set."""
    settings = runtime.settings()
    metrics.reset_multiprocess_dir()
    if settings.metrics_port:
        if metrics.multiprocess_dir() is None:
            log.warning("METRICS_PORT without PROMETHEUS_MULTIPROC_DIR: a prefork pool's tasks are not counted")
        try:
            serve(settings, settings.metrics_port)
        except OSError as exc:  # the port is taken (two workers, one METRICS_PORT): work on, unscraped
            log.error("metrics: cannot serve METRICS_PORT %s: %s", settings.metrics_port, exc)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        """Scrapes every few seconds would flood the worker's log."""


def serve(settings: Settings, port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Serve the metrics on `port` in a daemon thread; returns the server (tests shut it down)."""

    def app(environ, start_response):
        verdict = metrics.scrape_verdict(settings, environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"))
        if verdict != "allowed" or environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            status = "404 Not Found" if verdict == "off" or verdict == "allowed" else "403 Forbidden"
            start_response(status, [("Content-Type", "text/plain")])
            return [f"{status}\n".encode()]
        body, content_type = metrics.exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("metrics served on %s:%s", host, port)
    return server
