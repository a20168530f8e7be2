"""Fixtures shared by the web tests."""
import pytest

from saas.core import queue


@pytest.fixture
def sent(monkeypatch):
    """Celery tasks the views enqueue, captured instead of sent: [(name, kwargs)]."""
    calls = []
    monkeypatch.setattr(queue, "publish", lambda task, kwargs, countdown: calls.append((task.name, kwargs)))
    return calls
