"""A simulated bank's history written straight into the raw archive (no broker, no Redis).

For model training from scratch, tests and benchmarks: the same events `equilibrate produce`
would send, archived exactly as `equilibrate archive` would store them (validated, one flush per
simulated day), so `model build-dataset` reads them like any other archive.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from equilibrate.schema import parse_transaction
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator
from equilibrate.storage.archive_store import ArchiveStore, PendingRow


def simulate_into_archive(root: Path, customers: int, days: int, *, seed: int, start: datetime) -> ArchiveStore:
    sim = Simulator(generate_customers(customers, seed), seed, start)
    archive = ArchiveStore(root)
    archive.recover()
    offset = 0
    for batch in sim.days(days):
        rows = []
        for raw in sim.encode(batch):
            rows.append(PendingRow(parse_transaction(raw), 0, offset))
            offset += 1
        archive.commit(rows, {"simulated:0": offset})
    return archive
