"""Retry delays: exponential backoff with jitter, the one schedule every retried task uses."""
import random


def backoff_seconds(retry: int, cap: float = 600.0) -> float:
    """About 4, 8, 16, 32, 64 s ... for retry 0, 1, 2, ..., capped, +-25% jitter so retries spread."""
    return min(4 * 2 ** retry, cap) * random.uniform(0.75, 1.25)
