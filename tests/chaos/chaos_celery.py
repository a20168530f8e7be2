"""Test-only launcher: `python chaos_celery.py -A scheduled worker|beat ...` with chaos broker options.

The chaos suite shortens the broker's visibility timeout (CHAOS_VISIBILITY_TIMEOUT seconds) and
sweeps unacked messages every second, so a task lost with a SIGKILLed worker comes back in
seconds instead of production's two hours. Everything else is the product's own Celery app.
"""
from __future__ import annotations

import os
import sys

from celery.signals import worker_init

from scheduled.celery_app import app

timeout = os.environ.get("CHAOS_VISIBILITY_TIMEOUT")


@worker_init.connect
def _short_visibility_timeout(**_kwargs) -> None:
    """After the product's own worker_init handler bound the broker from the settings (connected
    first, so it runs first), before the worker connects."""
    if timeout:
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,  # the product's own (Sentinel's master_name)
            "visibility_timeout": int(timeout), "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
        }

if __name__ == "__main__":
    from celery.__main__ import main

    sys.argv[0] = "celery"
    sys.exit(main())
