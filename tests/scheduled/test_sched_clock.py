"""The scheduler's clock: real time by default, a shared test clock file on request, never in production."""
from datetime import UTC, datetime, timedelta

import pytest

from saas.core.settings import Settings, SettingsError
from scheduled import clock, runner
from scheduled.models import JobRun


@pytest.fixture
def test_clock(tmp_path, monkeypatch, services):
    path = tmp_path / "clock"
    monkeypatch.setenv(clock.TEST_CLOCK_ENV, str(path))
    yield path
    monkeypatch.undo()


def test_real_time_without_a_test_clock(monkeypatch, services):
    monkeypatch.delenv(clock.TEST_CLOCK_ENV, raising=False)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=5)


def test_every_reader_follows_the_test_clock(settings, test_clock):
    at = datetime(2031, 3, 2, 0, 30, tzinfo=UTC)
    clock.set_test_clock(test_clock, at)
    assert clock.now() == at
    run = runner.run_job("flag-expiring-cards", settings)  # the slot defaults to the newest at the clock's now
    assert isinstance(run, JobRun) and run.slot == datetime(2031, 3, 2, tzinfo=UTC)
    assert run.finished_at == at


def test_refused_in_production(test_clock, monkeypatch):
    clock.set_test_clock(test_clock, datetime(2031, 3, 2, tzinfo=UTC))
    monkeypatch.setenv("SAAS_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "a-long-production-secret-0123456789")
    with pytest.raises(SettingsError, match="test-only clock"):  # a production process does not start
        Settings.from_env()
