"""Ingest gate cost per event: IngestGate + to_arrays against ColumnarGate, in process (no Kafka).

Why: the feature engine must sustain 50,000 events/s on two cores, and the per-event gate was half
of its budget. This measures exactly the work ColumnarGate replaces in the engine, on 20,000-event
batches of simulated events (5,000 customers, the engine benchmark's population):

- gate+to_arrays: `IngestGate.check`, the customer index and `to_arrays` (what the task measured);
- engine prelude: that plus the per-record offsets loop and per-event watermark loop of the engine,
  which ColumnarBatch also provides (`offsets`, `watermarks`);
- columnar: `ColumnarGate.check`, which yields all of the above.

A second scenario re-encodes 1% of the events in another key order (valid, but not in the canonical
layout), to show the cost of the per-event fallback. Both gates see the same batches in order, with
a known-customer lookup answering yes (after the first batch, the positive cache answers).

    .venv/bin/python bench/bench_gate.py [--customers 5000] [--batches 5] [--repeat 5]

Writes bench/results/gate.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from equilibrate.features.columnar import ColumnarGate  # noqa: E402
from equilibrate.features.state import to_arrays  # noqa: E402
from equilibrate.kafka.transport import Record, TopicPartition  # noqa: E402
from equilibrate.sources.customers import generate_customers  # noqa: E402
from equilibrate.sources.gate import IngestGate, RecentIds  # noqa: E402
from equilibrate.sources.simulator import Simulator  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gate.json"
BATCH = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def _known(ids: Sequence[str]) -> list[bool]:
    return [True] * len(ids)


def _batches(customers: int, count: int, shuffled: float, seed: int = 7) -> list[list[Record]]:
    sim = Simulator(generate_customers(customers, seed=seed), seed=seed, start=START)
    values: list[bytes] = []
    keys: list[bytes] = []
    days = sim.days(None)
    while len(values) < count * BATCH:
        day = next(days)
        values += sim.encode(day)
        keys += sim.keys_of(day)
    rng = random.Random(seed)
    for i in rng.sample(range(count * BATCH), int(shuffled * count * BATCH)):
        event = orjson.loads(values[i])
        values[i] = orjson.dumps(dict(sorted(event.items())))  # valid, another key order
    offsets = [0] * 4
    records = []
    for key, value in zip(keys[: count * BATCH], values, strict=False):
        part = zlib.crc32(key) % 4
        records.append(Record("transactions", part, offsets[part], key, value, 0))
        offsets[part] += 1
    return [records[i : i + BATCH] for i in range(0, len(records), BATCH)]


def _reference(gate: IngestGate, records: Sequence[Record], prelude: bool) -> None:
    accepted, _ = gate.check(records)
    index: dict[str, int] = {}
    cust = [index.setdefault(a.txn.customer_id, len(index)) for a in accepted]
    events = to_arrays([a.txn for a in accepted], cust)
    if prelude:  # the engine's loops that ColumnarBatch also covers
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            offsets[(rec.topic, rec.partition)] = rec.offset + 1
        watermarks: dict[TopicPartition, int] = {}
        for a, ms in zip(accepted, events.ms.tolist(), strict=True):
            tp = (a.record.topic, a.record.partition)
            if ms > watermarks.get(tp, -1):
                watermarks[tp] = ms


def _time(batches: list[list[Record]], make: Callable[[], Callable[[Sequence[Record]], Any]], repeat: int) -> float:
    """Median over `repeat` runs of the mean us/event over all batches (a fresh gate per run)."""
    runs = []
    for _ in range(repeat):
        check = make()
        gc.collect()
        started = time.perf_counter()
        for batch in batches:
            check(batch)
        runs.append((time.perf_counter() - started) / sum(map(len, batches)) * 1e6)
    return round(statistics.median(runs), 3)


def _same(batches: list[list[Record]]) -> bool:
    ref, col = IngestGate(_known, RecentIds()), ColumnarGate(_known, RecentIds())
    for batch in batches:
        accepted, rejected = ref.check(batch)
        got = col.check(batch)
        index: dict[str, int] = {}
        cust = [index.setdefault(a.txn.customer_id, len(index)) for a in accepted]
        want = to_arrays([a.txn for a in accepted], cust)
        if got.customer_ids != list(index) or len(got.rejected) != len(rejected):
            return False
        if not all(np.array_equal(getattr(want, f), getattr(got.events, f)) for f in want.__dataclass_fields__):
            return False
    return True


def scenario(batches: list[list[Record]], repeat: int) -> dict[str, Any]:
    gate_only = _time(batches, lambda: lambda b: _reference(IngestGate(_known, RecentIds()), b, False), 1)
    del gate_only  # warm-up (imports, caches)

    def reference(prelude: bool) -> Callable[[], Callable[[Sequence[Record]], Any]]:
        def make() -> Callable[[Sequence[Record]], Any]:
            gate = IngestGate(_known, RecentIds())
            return lambda batch: _reference(gate, batch, prelude)

        return make

    ref = _time(batches, reference(False), repeat)
    prelude = _time(batches, reference(True), repeat)
    col = _time(batches, lambda: ColumnarGate(_known, RecentIds()).check, repeat)
    probe = ColumnarGate(_known, RecentIds())
    scanned = sum(probe.check(b).scanned for b in batches) / sum(map(len, batches))
    return {
        "gate_plus_to_arrays_us_per_event": ref,
        "gate_to_arrays_and_engine_loops_us_per_event": prelude,
        "columnar_us_per_event": col,
        "speedup_vs_gate_plus_to_arrays": round(ref / col, 2),
        "speedup_vs_engine_prelude": round(prelude / col, 2),
        "scanned_fraction": round(scanned, 4),
        "identical_results": _same(batches),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "ingest gate: IngestGate + to_arrays vs ColumnarGate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "batch": BATCH,
        "batches": args.batches,
        "customers": args.customers,
    }
    for name, shuffled in (("canonical", 0.0), ("one_percent_other_key_order", 0.01)):
        result[name] = scenario(_batches(args.customers, args.batches, shuffled), args.repeat)
        print(name, result[name], flush=True)
    result["machine"] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "orjson": orjson.__version__,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
