"""The product's Prometheus metrics: every counter and histogram, who may scrape, and the exposition.

One process (the Flask dev server, a solo or threads worker) keeps its metrics in memory. Under
gunicorn, and in a Celery prefork worker, the scraped process is not the one that counted: with
PROMETHEUS_MULTIPROC_DIR set in the environment *before the process starts* (prometheus-client
chooses its storage at import), every process writes its values to files there and a scrape
merges them. The directory is wiped when gunicorn's master or a worker's main process starts
(`reset_multiprocess_dir`), and gunicorn reports its dead children (`mark_process_dead`).
docs/operations.md lists each metric with an alert rule.

Every metric has labels, so none writes a file in a process that never counts it (the gunicorn
master, the worker's main process).
"""
from __future__ import annotations

import glob
import hmac
import ipaddress
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from saas.core.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
if os.environ.get(MULTIPROC_ENV):
    # Any process of the image may count (a `saas jobs run` in a fresh container): the directory
    # must exist before the first value is written, or counting would raise.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
disable_created_metrics()  # the *_created series double the output; multi-process mode has none either

JOB_RUNS = Counter("saas_job_runs", "Job runs finished, by job and status (succeeded, failed); dry runs are not counted.",
                   ["job", "status"])
JOB_DURATION = Histogram("saas_job_run_duration_seconds", "Wall time of one attempt of a job run.", ["job"],
                         buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 2 * 3600, 3 * 3600, float("inf")))
JOB_ROWS_SCANNED = Counter("saas_job_rows_scanned", "Rows a job looked at.", ["job"])
JOB_ROWS_CHANGED = Counter("saas_job_rows_changed", "Rows a job changed.", ["job"])
JOB_EMAILS_QUEUED = Counter("saas_job_emails_queued", "Emails a job wrote to the outbox.", ["job"])
OUTBOX_ATTEMPTS = Counter("saas_outbox_delivery_attempts",
                          "Outbox send attempts by outcome: sent, retry (temporary failure, will retry), failed "
                          "(given up), unreachable (SMTP not reached; the row waits, no attempt used).", ["outcome"])
WEBHOOK_EVENTS = Counter("saas_webhook_events",
                         "Stripe webhooks received, by outcome: received (new), duplicate (a replay), rejected (400).",
                         ["outcome"])
WEBHOOK_PROCESSING = Counter("saas_webhook_processing",
                             "Processing attempts of stored webhook events: processed, failed (will be retried).",
                             ["outcome"])
WEBHOOK_LAG = Histogram("saas_webhook_processing_lag_seconds",
                        "From a webhook event's arrival to its processing, by event type (other: unhandled types).",
                        ["type"], buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf")))
RATE_LIMITED = Counter("saas_rate_limited", "Requests refused with 429, by limit (the key's kind) and rule.",
                       ["limit", "rule"])
CELERY_TASKS = Counter("saas_celery_tasks", "Celery task outcomes: succeeded, failed, retried.", ["task", "outcome"])


def multiprocess_dir() -> str | None:
    """The directory of multi-process mode, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


def reset_multiprocess_dir() -> None:
    """Create the directory, or empty it of a previous run's files (prometheus-client's docs ask
    for a wiped directory at each start). Called by gunicorn's master and a worker's main process."""
    path = multiprocess_dir()
    if path is None:
        return
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def mark_process_dead(pid: int) -> None:
    """A child (gunicorn worker, Celery pool process) exited: drop its live gauges."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid)


def exposition(extra: Iterable[Collector] = ()) -> tuple[bytes, str]:
    """This process tree's metrics (and `extra` collectors') in the Prometheus text format."""
    extra_registry = CollectorRegistry(auto_describe=False)
    for collector in extra:
        extra_registry.register(collector)
    if multiprocess_dir() is not None:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        own = generate_latest(merged)
    else:
        own = generate_latest(REGISTRY)
    return own + generate_latest(extra_registry), CONTENT_TYPE_LATEST


def scrape_verdict(settings: Settings, remote_addr: str | None, authorization: str | None) -> str:
    """'allowed', 'refused', or 'off' (neither METRICS_ALLOW nor METRICS_TOKEN is set: nobody may
    scrape, and the endpoint answers as if it did not exist)."""
    if not settings.metrics_allow and not settings.metrics_token:
        return "off"
    if settings.metrics_token and authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.metrics_token.encode()):
            return "allowed"
    if _address_allowed(settings.metrics_allow, remote_addr):
        return "allowed"
    return "refused"


def _address_allowed(networks: tuple[Any, ...], remote_addr: str | None) -> bool:
    try:
        address = ipaddress.ip_address((remote_addr or "").strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks if network.version == address.version)
