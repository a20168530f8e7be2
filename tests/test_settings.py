"""Settings: read from the environment, and a bad one stops the process naming it."""
import subprocess
import sys

import pytest
from flask import request

from saas.core.settings import Settings, SettingsError

BASE = {"SAAS_ENV": "dev", "DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0",
        "SMTP_URL": "smtp://h:25"}


def test_defaults_match_design():
    s = Settings.from_env(BASE)
    assert (s.card_expiring_days, s.inactive_after_months, s.purge_grace_days) == (30, 6, 30)
    assert s.schedules["flag-expiring-cards"] == "0 0 * * *"
    assert s.catchup_window.total_seconds() == 36 * 3600


def test_several_webhook_secrets_for_rotation():
    s = Settings.from_env({**BASE, "STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old"})
    assert s.stripe_webhook_secrets == ("whsec_new", "whsec_old")


@pytest.mark.parametrize(("changes", "named"), [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://nope"}, "REDIS_URL"),
    ({"SMTP_URL": ""}, "SMTP_URL"),
    ({"SAAS_ENV": "production"}, "SECRET_KEY"),
    ({"SAAS_ENV": "staging"}, "SAAS_ENV"),
    ({"SAAS_ENV": "production", "SECRET_KEY": "a-long-enough-secret-key"}, "APP_URL"),
    ({"APP_URL": "evil.example"}, "APP_URL"),
    ({"APP_TIMEZONE": "Mars/Olympus"}, "APP_TIMEZONE"),
    ({"CARD_EXPIRING_DAYS": "thirty"}, "CARD_EXPIRING_DAYS"),
    ({"PURGE_GRACE_DAYS": "0"}, "PURGE_GRACE_DAYS"),
    ({"CATCHUP_WINDOW": "yesterday"}, "CATCHUP_WINDOW"),
    ({"FINANCE_EMAILS": "finance-at-example"}, "FINANCE_EMAILS"),
    ({"SCHEDULE_FLAG_EXPIRING_CARDS": "0 25 * * *"}, "SCHEDULE_FLAG_EXPIRING_CARDS"),
    ({"STRIPE_SECRET_KEY": "sk_live_abc", "STRIPE_API_BASE": "http://127.0.0.1:12111"}, "STRIPE_API_BASE"),
])
def test_bad_setting_is_named(changes, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env({**BASE, **changes})


def test_second_tuesday_cron_is_accepted():
    s = Settings.from_env({**BASE, "SCHEDULE_FINANCE_SUMMARY": "0 1 8-14 * tue"})
    assert s.schedules["finance-summary"] == "0 1 8-14 * tue"


def test_missing_setting_stops_the_command_with_its_name():
    env = {"PATH": "/usr/bin:/bin", "SAAS_ENV": "production", "DATABASE_URL": "postgresql://u@h/db",
           "REDIS_URL": "redis://h:6379/0", "SMTP_URL": "smtp://h:25"}
    result = subprocess.run([sys.executable, "-m", "saas", "routes"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_proxy_hops_make_limits_see_the_visitor(with_settings):
    from saas.web.app import create_app

    app = create_app(with_settings(trusted_proxy_hops=1))
    seen = []
    app.before_request(lambda: seen.append(request.remote_addr))
    app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert seen == ["203.0.113.7"]


def test_forwarding_headers_are_ignored_by_default(app):
    seen = []
    app.before_request(lambda: seen.append(request.remote_addr))
    app.test_client().get("/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    assert seen == ["127.0.0.1"]


@pytest.mark.parametrize(("raw", "ok"), [("10s", True), ("9s", False), ("0", False), ("365d", True),
                                         ("366d", False), ("8760h", True), ("99999999999d", False)])
def test_catchup_window_is_at_least_one_dispatch_interval_and_at_most_a_year(raw, ok):
    if ok:
        assert Settings.from_env({**BASE, "CATCHUP_WINDOW": raw}).catchup_window.total_seconds() > 0
    else:
        with pytest.raises(SettingsError, match="CATCHUP_WINDOW"):
            Settings.from_env({**BASE, "CATCHUP_WINDOW": raw})


@pytest.mark.parametrize("cron", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_cron_naming_no_real_day_is_refused(cron):
    with pytest.raises(SettingsError, match="SCHEDULE_PURGE_DORMANT_ACCOUNTS"):
        Settings.from_env({**BASE, "SCHEDULE_PURGE_DORMANT_ACCOUNTS": cron})


def test_a_command_may_do_without_the_services_it_does_not_use():
    s = Settings.from_env({"SAAS_ENV": "production"}, needs=frozenset())
    assert (s.database_url, s.redis_url, s.smtp_url, s.secret_key) == ("", "", "", "")  # never the dev key
    with pytest.raises(SettingsError, match="SMTP_URL"):
        Settings.from_env({"SAAS_ENV": "dev", "SMTP_URL": "http://mail"}, needs=frozenset())  # set: checked
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({"SAAS_ENV": "dev"}, needs=frozenset({"DATABASE_URL"}))


def test_log_format_is_text_or_json():
    assert Settings.from_env(BASE).log_format == "text"
    assert Settings.from_env({**BASE, "LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({**BASE, "LOG_FORMAT": "xml"})


def test_prepared_statements_are_on_unless_turned_off_for_pgbouncer():
    assert Settings.from_env(BASE).database_prepared_statements is True
    assert Settings.from_env({**BASE, "DATABASE_PREPARED_STATEMENTS": "OFF"}).database_prepared_statements is False
    with pytest.raises(SettingsError, match="DATABASE_PREPARED_STATEMENTS"):
        Settings.from_env({**BASE, "DATABASE_PREPARED_STATEMENTS": "no"})


def test_the_broker_is_redis_unless_celery_broker_url_names_rabbitmq():
    from saas.core.queue import celery_config

    s = Settings.from_env(BASE)
    assert s.broker_url == BASE["REDIS_URL"] and celery_config(s)["broker_transport_options"]["visibility_timeout"]
    rabbit = Settings.from_env({**BASE, "CELERY_BROKER_URL": "amqp://saas:pw@rabbit:5672/saas"})
    assert rabbit.broker_url == "amqp://saas:pw@rabbit:5672/saas" and rabbit.redis_url == BASE["REDIS_URL"]
    assert celery_config(rabbit)["broker_transport_options"] == {"confirm_publish": True}
    with pytest.raises(SettingsError, match="CELERY_BROKER_URL") as refused:
        Settings.from_env({**BASE, "CELERY_BROKER_URL": "sqs://key:secret@queue"})
    assert "secret" not in str(refused.value)
