"""REDIS_URL (and a Redis CELERY_BROKER_URL): a plain Redis URL or one naming Redis Sentinels.

    redis://[[user]:password@]host:6379/0             one Redis server
    redis+sentinel://[[user]:password@]host:26379[,host2:26379...]/mymaster[/0]
                                                      the master Sentinel elects for `mymaster`

Every Redis client of the product is built from this one parse: our own client (progress, slot-sent
keys, health), the limiter's counters, RedBeat's leader lock and the Celery broker. Each library
spells Sentinel its own way, so each gets its form here. The user and password are the Redis
servers'; the Sentinels are reached without them (Sentinel's usual setup, and what redis-py does
when it is given no `sentinel_kwargs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import redis
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
EXAMPLE = "redis+sentinel://host:26379,host2:26379/mymaster/0"


class RedisUrlError(ValueError):
    """A redis+sentinel:// URL that names no Sentinel or no master; the message says which."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel(url: str) -> SentinelTarget | None:
    """The Sentinels, master name, database and credentials of a redis+sentinel:// URL; None for any
    other URL. RedisUrlError when the URL is malformed (the message never repeats the password)."""
    if not url.startswith(SENTINEL_SCHEME):
        return None
    rest = url.removeprefix(SENTINEL_SCHEME)
    userinfo, _, rest = rest.rpartition("@")
    hosts, _, path = rest.partition("/")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = []
    for entry in filter(None, hosts.split(",")):
        host, _, port = entry.partition(":")
        if not host or (port and not port.isdigit()):
            raise RedisUrlError(f"a Sentinel must be host or host:port (got {entry!r}; e.g. {EXAMPLE})")
        sentinels.append((host, int(port) if port else SENTINEL_PORT))
    if not sentinels:
        raise RedisUrlError(f"names no Sentinel host (e.g. {EXAMPLE})")
    service, _, db = path.strip("/").partition("/")
    if not service:
        raise RedisUrlError(f"names no master after the Sentinels (e.g. {EXAMPLE})")
    if db and not db.isdigit():
        raise RedisUrlError(f"the database after the master's name must be a number (got {db!r})")
    return SentinelTarget(tuple(sentinels), unquote(service), int(db or 0),
                          unquote(username) or None, unquote(password) or None)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for `url`; `options` go to every connection to the Redis server. Through Sentinel,
    each new connection asks the Sentinels where the master is, and a connection to a master that
    became a replica is dropped (redis-py's SentinelConnectionPool), so a failover needs no restart."""
    target = parse_sentinel(url)
    if target is None:
        return redis.Redis.from_url(url, **options)
    sentinel_options = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    sentinels = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    return sentinels.master_for(target.service, db=target.db, username=target.username,
                                password=target.password, **options)


def kombu_broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL for `url`, and the transport options it needs: kombu names Sentinels as
    `sentinel://host:port/db;sentinel://…` with the master in the `master_name` option."""
    target = parse_sentinel(url)
    if target is None:
        return url, {}
    auth = ""
    if target.password or target.username:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    broker = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels)
    return broker, {"master_name": target.service}


def redbeat_config(url: str) -> dict[str, Any]:
    """RedBeat's settings for `url`: its Sentinel mode wants a `redis-sentinel` URL and the Sentinels
    in `redbeat_redis_options`."""
    target = parse_sentinel(url)
    if target is None:
        return {"redbeat_redis_url": url}
    return {
        "redbeat_redis_url": "redis-sentinel://",
        "redbeat_redis_options": {
            "sentinels": list(target.sentinels), "service_name": target.service, "db": target.db,
            "username": target.username, "password": target.password,
            "socket_timeout": 5, "sentinel_kwargs": {"socket_timeout": 5},
        },
    }
