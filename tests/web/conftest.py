"""Fixtures shared by the web tests."""
import pytest


@pytest.fixture
def sent(monkeypatch):
    """Celery tasks the views enqueue, captured instead of sent: [(name, kwargs)]."""
    from scheduled.celery_app import app as celery_app

    calls = []
    monkeypatch.setattr(celery_app, "send_task",
                        lambda name, args=None, kwargs=None, **_: calls.append((name, kwargs or {})))
    return calls
