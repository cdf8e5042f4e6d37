"""Prometheus metrics of the API process: request counts and latencies by route, in the text format."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

#: Latency histogram buckets (seconds).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _labels(values: Mapping[str, str]) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in values.items()
    )
    return "{" + inner + "}" if inner else ""


class RequestMetrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = {}
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.predict_passes = 0  # /predict scoring passes, and the calls they answered (coalescing)
        self.predict_calls = 0

    def observe_pass(self, calls: int) -> None:
        with self.lock:
            self.predict_passes += 1
            self.predict_calls += calls

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.counts[(method, route, status)] += 1
            key = (method, route)
            counts = self.buckets.setdefault(key, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[key] += seconds

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain JSON-able lists (for adding up several processes' metrics)."""
        with self.lock:
            return {
                "counts": [[m, r, s, n] for (m, r, s), n in self.counts.items()],
                "buckets": [[m, r, list(c)] for (m, r), c in self.buckets.items()],
                "sums": [[m, r, v] for (m, r), v in self.sums.items()],
                "predict": [self.predict_passes, self.predict_calls],
            }

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Add another process's `snapshot` to these counters."""
        with self.lock:
            for m, r, s, n in snapshot["counts"]:
                self.counts[(m, r, int(s))] += int(n)
            for m, r, c in snapshot["buckets"]:
                mine = self.buckets.setdefault((m, r), [0] * (len(BUCKETS) + 1))
                if len(c) == len(mine):  # same bucket bounds (same version)
                    self.buckets[(m, r)] = [a + int(b) for a, b in zip(mine, c, strict=True)]
            for m, r, v in snapshot["sums"]:
                self.sums[(m, r)] += float(v)
            passes, calls = snapshot.get("predict", (0, 0))
            self.predict_passes += int(passes)
            self.predict_calls += int(calls)

    def render(self) -> Iterable[str]:
        with self.lock:
            yield "# HELP equilibrate_api_requests_total API requests by method, route and status."
            yield "# TYPE equilibrate_api_requests_total counter"
            for (method, route, status), n in sorted(self.counts.items()):
                labels = _labels({"method": method, "route": route, "status": str(status)})
                yield f"equilibrate_api_requests_total{labels} {n}"
            yield "# HELP equilibrate_api_request_seconds API request latency."
            yield "# TYPE equilibrate_api_request_seconds histogram"
            for (method, route), counts in sorted(self.buckets.items()):
                base = {"method": method, "route": route}
                for bound, n in zip(BUCKETS, counts, strict=False):
                    yield f"equilibrate_api_request_seconds_bucket{_labels(base | {'le': str(bound)})} {n}"
                yield f"equilibrate_api_request_seconds_bucket{_labels(base | {'le': '+Inf'})} {counts[-1]}"
                yield f"equilibrate_api_request_seconds_sum{_labels(base)} {self.sums[(method, route)]:.6f}"
                yield f"equilibrate_api_request_seconds_count{_labels(base)} {counts[-1]}"
            yield "# HELP equilibrate_api_predict_passes_total /predict passes (calls waiting together share one)."
            yield "# TYPE equilibrate_api_predict_passes_total counter"
            yield f"equilibrate_api_predict_passes_total {self.predict_passes}"
            yield "# HELP equilibrate_api_predict_calls_total /predict calls answered by those passes."
            yield "# TYPE equilibrate_api_predict_calls_total counter"
            yield f"equilibrate_api_predict_calls_total {self.predict_calls}"


def gauge(name: str, help_text: str, values: Mapping[tuple[tuple[str, str], ...], float]) -> Iterable[str]:
    yield f"# HELP {name} {help_text}"
    yield f"# TYPE {name} gauge"
    for labels, value in values.items():
        yield f"{name}{_labels(dict(labels))} {value:g}"
