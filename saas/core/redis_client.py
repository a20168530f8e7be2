"""The process's one Redis client (a connection pool), bound to REDIS_URL at the entry point
(one server, or the master that Sentinel names: saas.core.redis_url).

The limiter's storage, beat's RedBeat lock and the Celery broker keep their own pools (their
libraries build them from the same URL); everything of ours (operation progress, report
progress, slot-sent keys, health checks) shares this one.
"""
from __future__ import annotations

import redis

from saas.core import redis_url

_client: list[redis.Redis] = []


def bind(url: str) -> redis.Redis:
    """Build the client for `url` (replacing any earlier one)."""
    close()
    _client.append(redis_url.connect(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30))
    return _client[0]


def get() -> redis.Redis:
    """The bound client; RuntimeError before runtime.configure ran."""
    if not _client:
        raise RuntimeError("Redis is not configured: the entry point calls saas.core.runtime.configure(settings)")
    return _client[0]


def close() -> None:
    if _client:
        _client.pop().close()
