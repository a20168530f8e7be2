"""Fixtures of the chaos suite (run with `pytest -m chaos`)."""
from __future__ import annotations

import pytest

# One fake day passes every few seconds, so RedBeat's 30 s lock takeover spans days of slots.
CATCHUP_WINDOW = "20d"


@pytest.fixture
def wide_catchup_window(monkeypatch):
    """Widen CATCHUP_WINDOW by the same compression as the test clock, here and in every child."""
    monkeypatch.setenv("CATCHUP_WINDOW", CATCHUP_WINDOW)
    yield
    monkeypatch.undo()
