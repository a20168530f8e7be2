"""REDIS_URL through Redis Sentinel: one parse gives every Redis client of the product its form, and
each of them follows a failover to the replica without a restart (real redis-server processes:
a primary, a replica and three Sentinels)."""
from __future__ import annotations

import pytest
from celery import Celery
from flask import Flask
from limits import RateLimitItemPerMinute
from redbeat.schedulers import get_redis

from saas.core import redis_url
from saas.core.queue import celery_config
from saas.core.settings import Settings, SettingsError
from saas.dev.embedded import free_port
from saas.web.extensions import RateLimitCounters
from tests.engines import SentinelGroup

BASE = {"SAAS_ENV": "dev", "DATABASE_URL": "postgresql://u@h/db", "SMTP_URL": "smtp://h:25"}
URL = "redis+sentinel://:s3cret@sentinel-a:26379,sentinel-b:26380,sentinel-c/saas/2"


def test_a_sentinel_url_gives_each_library_its_own_spelling():
    s = Settings.from_env({**BASE, "REDIS_URL": URL})
    assert s.broker_is_redis
    config = celery_config(s)  # kombu: one sentinel:// per Sentinel, the master by name
    assert config["broker_url"] == ("sentinel://:s3cret@sentinel-a:26379/2;sentinel://:s3cret@sentinel-b:26380/2;"
                                    "sentinel://:s3cret@sentinel-c:26379/2")
    assert config["broker_transport_options"] == {"visibility_timeout": 7200, "master_name": "saas"}
    beat = redis_url.redbeat_config(URL)
    assert beat["redbeat_redis_url"].startswith("redis-sentinel")
    assert beat["redbeat_redis_options"]["sentinels"] == [("sentinel-a", 26379), ("sentinel-b", 26380),
                                                          ("sentinel-c", 26379)]
    assert (beat["redbeat_redis_options"]["service_name"], beat["redbeat_redis_options"]["db"]) == ("saas", 2)
    # RabbitMQ as the broker, Sentinel for everything else
    rabbit = Settings.from_env({**BASE, "REDIS_URL": URL, "CELERY_BROKER_URL": "amqp://guest:guest@rabbit//"})
    assert celery_config(rabbit)["broker_url"] == "amqp://guest:guest@rabbit//"
    assert redis_url.kombu_broker("redis://h:6379/0") == ("redis://h:6379/0", {})


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://:s3cret@/saas/0", "names no Sentinel host"),
    ("redis+sentinel://:s3cret@h:26379", "names no master"),
    ("redis+sentinel://:s3cret@h:port/saas", "host or host:port"),
    ("redis+sentinel://:s3cret@h:26379/saas/zero", "must be a number"),
])
@pytest.mark.parametrize("name", ["REDIS_URL", "CELERY_BROKER_URL"])
def test_a_malformed_sentinel_url_is_named_without_its_password(name, url, says):
    env = {**BASE, "REDIS_URL": "redis://h:6379/0", name: url}
    with pytest.raises(SettingsError, match=name) as refused:
        Settings.from_env(env)
    assert says in str(refused.value) and "s3cret" not in str(refused.value)


def test_a_redis_url_of_another_scheme_is_refused_without_its_password():
    with pytest.raises(SettingsError, match="REDIS_URL") as refused:
        Settings.from_env({**BASE, "REDIS_URL": "valkey://:s3cret@h:6379/0"})
    assert "s3cret" not in str(refused.value)


@pytest.fixture
def group(tmp_path):
    group = SentinelGroup(tmp_path / "sentinel", [free_port() for _ in range(5)]).start()
    yield group
    group.stop()


def test_every_redis_client_follows_a_failover(group):
    settings = Settings.from_env({**BASE, "REDIS_URL": group.url})
    ours = redis_url.connect(group.url, socket_timeout=5)  # progress, slot-sent keys, health
    web = Flask(__name__)
    web.config["SETTINGS"] = settings
    counters = RateLimitCounters()
    counters.init_app(web)
    celery = Celery(set_as_current=False)
    celery.conf.update(celery_config(settings), **redis_url.redbeat_config(settings.redis_url))
    limit = RateLimitItemPerMinute(100)

    def use_each(round_: int) -> None:
        ours.set(f"ours:{round_}", "1")
        assert counters.limiter.hit(limit, "contact", "198.51.100.7")
        get_redis(celery).set(f"redbeat:{round_}", "1")
        celery.send_task("saas.nothing", kwargs={"round": round_})

    use_each(1)
    ours.execute_command("WAIT", 1, 5000)  # the replica has round 1 before the primary dies
    timeline = group.fail_over()
    assert timeline["new"] != timeline["old"]
    use_each(2)  # no client was rebuilt: each asked the Sentinels again

    primary = redis_url.connect(group.url)
    assert group.primary_port() == timeline["new"]
    assert primary.get("ours:1") and primary.get("ours:2")
    assert primary.get("redbeat:1") and primary.get("redbeat:2")
    assert primary.llen("celery") == 2  # both publishes are queued on the new primary
    window = counters.limiter.get_window_stats(limit, "contact", "198.51.100.7")
    assert window.remaining == 98  # both hits counted, on the new primary
