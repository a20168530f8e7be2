"""Rate limits counted before the work, atomically, so N simultaneous requests cannot pass more than the limit.

Flask-Limiter's decorator with `deduct_when` tests the limit before a request and counts it after
the response: simultaneous requests all pass the test. Here one Redis INCR (the `limits` library's
storage and strategy) counts the attempt and answers whether it fits; an attempt that should not
count (a correct sign-in) is given back. Redis down: the same limits in this process's memory,
rather than a 500.
"""
from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from saas.core import metrics
from saas.web.extensions import limiter

log = logging.getLogger(__name__)
NAMESPACE = "saas"
_in_memory = FixedWindowRateLimiter(MemoryStorage())


class LimitReached(TooManyRequests):
    """A 429 whose page says why (`description`) and when to come back (`retry_after` seconds)."""

    def __init__(self, description: str, retry_after: int):
        super().__init__(description)
        self.retry_after = retry_after


def _hit(item: RateLimitItem, key: str, cost: int = 1) -> tuple[bool, FixedWindowRateLimiter]:
    strategy = limiter.limiter
    try:
        return strategy.hit(item, NAMESPACE, key, cost=cost), strategy
    except strategy.storage.base_exceptions as exc:
        log.warning("rate limit storage unreachable, limiting in memory: %r", exc)
        return _in_memory.hit(item, NAMESPACE, key, cost=cost), _in_memory


def take(limit: str, key: str, refusal: str) -> None:
    """Count one attempt for `key` against `limit` ("5 per minute"); LimitReached past it."""
    item = parse(limit)
    fits, strategy = _hit(item, key)
    if not fits:
        metrics.RATE_LIMITED.labels(key.partition(":")[0], limit).inc()
        reset_at, _ = strategy.get_window_stats(item, NAMESPACE, key)
        raise LimitReached(refusal, max(1, math.ceil(reset_at - time.time())))


def give_back(limit: str, key: str) -> None:
    """Uncount an attempt `take` counted (it turned out not to be one the limit is about)."""
    _hit(parse(limit), key, cost=-1)
