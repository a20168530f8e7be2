"""The one Celery app, configured lazily from the shared settings."""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

TASK_MODULES = ["scheduled.delivery", "scheduled.tasks", "billing.tasks", "scheduled.reports"]

app = Celery("saas", include=TASK_MODULES)
app.set_default()  # shared_task proxies resolve to this app from any thread, not just the importing one


def celery_config() -> dict:
    """Celery settings derived from saas.settings; evaluated when Celery first needs them."""
    from saas.settings import get_settings

    settings = get_settings()
    return {
        "broker_url": settings.redis_url,
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
        # Longer than any countdown we use; duplicates are harmless (ledger, outbox claims).
        "broker_transport_options": {"visibility_timeout": 2 * 3600},
        "broker_connection_retry_on_startup": True,
        "timezone": settings.app_timezone,
        "enable_utc": True,
        "beat_scheduler": "scheduled.beat:SlotScheduler",
        "beat_max_loop_interval": 5,
        "redbeat_redis_url": settings.redis_url,
        "redbeat_key_prefix": "saas:redbeat",
        "redbeat_lock_timeout": 30,
        "beat_schedule": {
            "outbox-sweep": {"task": "scheduled.delivery.deliver_outbox", "schedule": 60.0},
            "missed-slot-watchdog": {"task": "scheduled.tasks.watchdog", "schedule": 300.0},
            "stripe-deletion-sweep": {"task": "billing.tasks.sweep_stripe_deletions", "schedule": 600.0},
        },
    }


app.add_defaults(celery_config)


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    """Pooled database connections must not cross a fork."""
    from saas.db import reset_engines

    reset_engines()
