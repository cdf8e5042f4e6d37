"""Freshness: how long a transaction took from being produced to its profile being written.

Measured per event from the Kafka record timestamp (producer create time) to the moment the
batch's Redis transaction returned. Wall clock on purpose: this is an operational measurement of
the pipeline, not pipeline logic. Percentiles over a sliding window are published to Redis.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import redis

LATENCY_KEY = "eq:features:latency"


class Freshness:
    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._batches: deque[tuple[float, np.ndarray]] = deque()

    def record(self, produced_ms: list[int], committed_at: float | None = None) -> None:
        now = time.time() if committed_at is None else committed_at
        stamps = np.asarray([ms for ms in produced_ms if ms > 0], dtype=np.float64)
        if stamps.size:
            self._batches.append((now, now * 1000.0 - stamps))
        while self._batches and self._batches[0][0] < now - self.window_s:
            self._batches.popleft()

    def percentiles(self) -> dict[str, float]:
        if not self._batches:
            return {}
        lat = np.concatenate([b for _, b in self._batches])
        p50, p99, pmax = np.percentile(lat, [50, 99, 100])
        return {
            "p50_ms": round(float(p50), 1),
            "p99_ms": round(float(p99), 1),
            "max_ms": round(float(pmax), 1),
            "samples": float(lat.size),
            "window_s": self.window_s,
        }

    def publish(self, client: redis.Redis) -> dict[str, float]:
        stats = self.percentiles()
        if stats:
            client.hset(LATENCY_KEY, mapping=stats)  # type: ignore[arg-type]
        return stats
