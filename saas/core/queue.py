"""Task queueing: the one Celery app, and the one way to queue a task.

Tasks are referenced through their task objects and always called with keyword arguments:
`enqueue(task, **kwargs)` publishes now; `enqueue_after_commit(session, task, **kwargs)`
publishes when the session's transaction commits (nothing is sent if it rolls back), which is
what code that writes rows the task will read must use. A publish that fails is logged: every
task here has a sweep or a retry that picks its work up.

The worker's and beat's own configuration (the task modules, the beat schedule, the scheduler)
is added by `scheduled.celery_app`, which `celery -A scheduled` loads.
"""
from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy import event
from sqlalchemy.orm import Session

from saas.core import db, redis_url
from saas.core.settings import Settings

log = logging.getLogger(__name__)
PENDING = "queue_after_commit"  # session.info key: [(task, kwargs, countdown), ...]

app = Celery("saas")
app.set_default()  # a task object resolves to this app from any thread, not just the importing one


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings derived from ours."""
    return {
        "broker_url": redis_url.kombu_broker(settings.broker_url)[0],
        # No result backend: nothing reads a task's return value (progress and outcomes live in
        # PostgreSQL and Redis keys of our own), and without one a publish does not subscribe to
        # a result channel (two Redis commands saved per enqueue, e.g. per contact form POST).
        "task_ignore_result": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Every task is idempotent, so a task lost with its worker is run again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": 15 * 60,
        "task_time_limit": 16 * 60,
        **broker_options(settings),
        "broker_connection_retry_on_startup": True,
        # Task events, for Flower (`celery -A scheduled flower`, docs/operations.md): workers
        # report each task's start and outcome, and a publish reports the task as sent.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "timezone": settings.app_timezone,
        "enable_utc": True,
    }


def broker_options(settings: Settings) -> dict[str, Any]:
    """What differs between the two brokers (docs/operations.md, "RabbitMQ as the broker")."""
    if settings.broker_is_redis:
        # Redis redelivers a message nobody acknowledged within the visibility timeout: longer
        # than any countdown we use; duplicates are harmless (ledger, outbox claims). Through
        # Sentinel, kombu also needs the master's name (redis_url.kombu_broker).
        sentinel = redis_url.kombu_broker(settings.broker_url)[1]
        return {"broker_transport_options": {"visibility_timeout": 2 * 3600, **sentinel}}
    # RabbitMQ redelivers an unacknowledged message when its consumer's connection closes, so
    # there is no timeout to tune. Publisher confirms: a publish returns once the broker has the
    # message (a durable queue keeps it across a broker restart).
    return {"broker_transport_options": {"confirm_publish": True}}


def bind(settings: Settings) -> None:
    """Point the app at the process's broker (runtime.configure calls this). When the broker
    changes, the connection pools built for the old one are dropped (Celery keeps them on the app)."""
    config = celery_config(settings)
    if app.configured and app.conf.broker_url != config["broker_url"]:
        app._pool = None  # rebuilt for the new broker on the next publish; the old one is left to close
        app.amqp._producer_pool = None
    app.conf.update(config)


def enqueue(task: Task, *, countdown: float | None = None, **kwargs: Any) -> None:
    """Publish `task` with keyword arguments now."""
    publish(task, kwargs, countdown)


def publish(task: Task, kwargs: dict[str, Any], countdown: float | None) -> None:
    """The one place a task leaves this process (the tests that count tasks capture it here)."""
    task.apply_async(kwargs=kwargs, countdown=countdown)


def enqueue_after_commit(session: Session, task: Task, *, countdown: float | None = None, **kwargs: Any) -> None:
    """Publish `task` with keyword arguments when `session` commits; dropped if it rolls back.
    The same task with the same arguments is published once per commit."""
    pending = session.info.setdefault(PENDING, [])
    item = (task, kwargs, countdown)
    if item not in pending:
        pending.append(item)


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    for task, kwargs, countdown in session.info.pop(PENDING, ()):
        try:
            enqueue(task, countdown=countdown, **kwargs)
        except Exception:  # Redis down: the task's sweep or retry picks the work up
            log.warning("could not enqueue %s%s after commit", task.name, kwargs or "", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(PENDING, None)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    """Pooled database connections must not cross a fork."""
    db.reset_engines()
