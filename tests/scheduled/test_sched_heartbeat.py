"""Dead-man's-switch pings: a real HTTP receiver hears start and success, start and fail, or nothing."""
from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import pytest

from saas.core.settings import Settings, SettingsError
from scheduled import runner
from scheduled.heartbeat import ping_url
from scheduled.jobs import JOBS
from tests.helpers import HttpReceiver as Receiver

SLOT = datetime(2025, 5, 10, tzinfo=UTC)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def boom(session, ctx):
    raise RuntimeError("the job broke")


def test_a_run_pings_start_then_success(with_settings, receiver, make_user, card):
    card(make_user().id, 5, 2025)
    settings = with_settings(heartbeat_url=receiver.base + "/ping/{job}/{event}")
    run = runner.run_job("flag-expiring-cards", settings, SLOT, now=SLOT)
    assert run.status == "succeeded" and run.changed == 1
    assert receiver.paths == ["/ping/flag-expiring-cards/start", "/ping/flag-expiring-cards/success"]


def test_a_failed_run_pings_start_then_fail(with_settings, receiver, monkeypatch):
    monkeypatch.setitem(JOBS, "remind-inactive-users", boom)
    settings = with_settings(heartbeat_url=receiver.base + "/ping/{job}/{event}")
    run = runner.run_job("remind-inactive-users", settings, SLOT, now=SLOT)
    assert run.status == "failed" and "the job broke" in run.error
    assert receiver.paths == ["/ping/remind-inactive-users/start", "/ping/remind-inactive-users/fail"]


def test_a_dry_run_and_an_already_claimed_slot_ping_nothing(with_settings, receiver, make_user, card):
    card(make_user().id, 5, 2025)
    settings = with_settings(heartbeat_url=receiver.base + "/ping/{job}/{event}")
    dry = runner.run_job("flag-expiring-cards", settings, SLOT, now=SLOT, dry_run=True)
    assert dry.status == "succeeded" and dry.dry_run
    assert receiver.paths == []
    runner.run_job("flag-expiring-cards", settings, SLOT, now=SLOT)
    assert runner.run_job("flag-expiring-cards", settings, SLOT, now=SLOT) is None  # a no-op claim
    assert receiver.paths == ["/ping/flag-expiring-cards/start", "/ping/flag-expiring-cards/success"]


def test_sentry_crons_words_replace_the_events(with_settings, receiver):
    settings = with_settings(heartbeat_url=receiver.base + "/api/1/cron/{job}/key/?status={event}",
                             heartbeat_events={"start": "in_progress", "success": "ok", "fail": "error"})
    runner.run_job("finance-summary", settings, SLOT.replace(hour=6), now=SLOT.replace(hour=6))
    assert receiver.paths == ["/api/1/cron/finance-summary/key/?status=in_progress",
                              "/api/1/cron/finance-summary/key/?status=ok"]


@pytest.mark.parametrize("failure", ["refused", "500", "timeout"])
def test_an_unreachable_or_slow_monitor_never_fails_the_job(with_settings, make_user, card, caplog, failure):
    card(make_user().id, 5, 2025)
    release = threading.Event()
    monitor = None
    if failure == "refused":
        probe = Receiver()
        url = probe.base + "/{job}/{event}"
        probe.close()  # nothing listens there any more
    else:
        monitor = Receiver(status=500) if failure == "500" else Receiver(delay=release)
        url = monitor.base + "/{job}/{event}"
    settings = with_settings(heartbeat_url=url, heartbeat_timeout=0.3)
    try:
        with caplog.at_level(logging.WARNING, logger="scheduled.heartbeat"):
            run = runner.run_job("flag-expiring-cards", settings, SLOT, now=SLOT)
    finally:
        release.set()
        if monitor is not None:
            monitor.close()
    assert run.status == "succeeded" and run.changed == 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "scheduled.heartbeat"]
    assert len(warnings) == 2 and "heartbeat start for job flag-expiring-cards not delivered" in warnings[0]
    assert all("/{job}" not in w and "flag-expiring-cards/start" not in w for w in warnings)  # the URL's secret part stays out


def test_healthchecks_slug_shape():
    settings = Settings.from_env({**_env(), "HEARTBEAT_URL": "https://hc-ping.com/PING-KEY/{job}{event}",
                                  "HEARTBEAT_EVENTS": "start=/start,success=,fail=/fail"})
    assert [ping_url(settings, "purge-dormant-accounts", e) for e in ("start", "success", "fail")] == [
        "https://hc-ping.com/PING-KEY/purge-dormant-accounts/start",
        "https://hc-ping.com/PING-KEY/purge-dormant-accounts",
        "https://hc-ping.com/PING-KEY/purge-dormant-accounts/fail"]


@pytest.mark.parametrize("env, message", [
    ({"HEARTBEAT_URL": "ftp://example.com/{job}"}, "HEARTBEAT_URL must be an http:// or https:// URL"),
    ({"HEARTBEAT_URL": "https://example.com/{job}/{status}"}, "only the placeholders {job} and {event}"),
    ({"HEARTBEAT_URL": "https://example.com/{job"}, "only the placeholders {job} and {event}"),
    ({"HEARTBEAT_EVENTS": "begin=in_progress"}, "HEARTBEAT_EVENTS must be pairs"),
    ({"HEARTBEAT_EVENTS": "start"}, "HEARTBEAT_EVENTS must be pairs"),
    ({"HEARTBEAT_TIMEOUT": "0"}, "HEARTBEAT_TIMEOUT must be more than 0"),
    ({"HEARTBEAT_TIMEOUT": "soon"}, "HEARTBEAT_TIMEOUT must be a number of seconds"),
    ({"HEARTBEAT_TIMEOUT": "nan"}, "HEARTBEAT_TIMEOUT must be more than 0"),
])
def test_heartbeat_settings_are_checked(env, message):
    with pytest.raises(SettingsError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Settings.from_env({**_env(), **env})


def _env() -> dict[str, str]:
    return {"SAAS_ENV": "test", "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0",
            "SMTP_URL": "smtp://h:25"}
