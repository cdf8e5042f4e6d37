"""Rate limits: a token bucket per API key and per client address (pure; in the API process's memory).

Each bucket holds up to `burst` requests and refills at `rate` per second. A refused request is told
how long until one token is back (the Retry-After header). Buckets are per process: with several API
processes behind a load balancer each enforces its own share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic, limit: int = 100_000):
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate, self.burst, self.clock, self.limit = rate, burst, clock, limit
        self.buckets: dict[str, _Bucket] = {}

    def take(self, who: str) -> float:
        """0.0 when `who` may go ahead (one token taken); else the seconds until it may retry."""
        now = self.clock()
        bucket = self.buckets.get(who)
        if bucket is None:
            if len(self.buckets) >= self.limit:  # many distinct callers: forget the idle ones
                self._prune(now)
            bucket = self.buckets[who] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = self.burst / self.rate
        self.buckets = {k: b for k, b in self.buckets.items() if now - b.at < full}


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
