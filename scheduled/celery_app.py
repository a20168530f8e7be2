"""What a worker and beat add to the one Celery app (saas.core.queue): the task modules, the
scheduler and the periodic schedule. `celery -A scheduled` loads this module."""
from __future__ import annotations

from celery.signals import after_setup_logger, after_setup_task_logger, beat_init, celeryd_init, worker_init

from billing.tasks import sweep_stripe_deletions
from saas.core import logs, redis_url, runtime
from saas.core.outbox.delivery import deliver_outbox
from saas.core.queue import app, celery_config
from scheduled import worker_metrics
from scheduled.tasks import watchdog

METRICS = worker_metrics  # its signal handlers count task outcomes and serve METRICS_PORT
TASK_MODULES = ["saas.core.outbox.delivery", "scheduled.tasks", "billing.tasks", "scheduled.reports"]

app.conf.update(
    include=TASK_MODULES,
    beat_scheduler="scheduled.beat:SlotScheduler",
    beat_max_loop_interval=5,
    redbeat_key_prefix="saas:redbeat",
    redbeat_lock_timeout=30,
)
# `celery -A scheduled` processes read their settings from the environment when Celery first
# needs its configuration (runtime.settings() binds the broker too).
app.add_defaults(lambda: {**celery_config(runtime.settings()), **redis_url.redbeat_config(runtime.settings().redis_url)})


@app.on_after_configure.connect
def _periodic_tasks(sender, **_kwargs) -> None:
    """The sweeps beat sends besides the nightly slots (which beat.SlotScheduler dispatches)."""
    sender.add_periodic_task(60.0, deliver_outbox.s(), name="outbox-sweep")
    sender.add_periodic_task(300.0, watchdog.s(), name="missed-slot-watchdog")
    sender.add_periodic_task(600.0, sweep_stripe_deletions.s(), name="stripe-deletion-sweep")


@worker_init.connect
@beat_init.connect
def _configure_process(**_kwargs) -> None:
    """A worker or beat process reads its settings from the environment once, at start."""
    runtime.settings()


@celeryd_init.connect
def _log_format_before_celery_logs(**_kwargs) -> None:
    """A worker may warn before Celery sets up its log handlers (e.g. running as root): those
    lines are in LOG_FORMAT too. Celery replaces this handler with its own (below)."""
    logs.configure(runtime.settings().log_format)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger, **_kwargs) -> None:
    """Celery sets up the worker's and beat's log handlers; LOG_FORMAT=json makes them write JSON
    lines, and every line logged inside a job run carries its job, slot and run id."""
    logs.apply(runtime.settings().log_format, logger.handlers)
