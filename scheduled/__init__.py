"""The Celery app, the slot-aware schedule, the job ledger, the nightly jobs and outbox delivery.

`celery -A scheduled worker` and `celery -A scheduled beat` find `app` here.
"""
from scheduled.celery_app import app

__all__ = ["app"]
