"""A simulated bank's raw archive, written directly (no broker): the input of the model tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from equilibrate.schema import parse_transaction
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.simulator import Simulator
from equilibrate.storage.archive_store import ArchiveStore, PendingRow

START = datetime(2026, 1, 1, tzinfo=UTC)


def simulated_archive(root: Path, customers: int, days: int, seed: int = 11) -> ArchiveStore:
    """Every simulated event, archived as the archive component would (one flush per day)."""
    sim = Simulator(generate_customers(customers, seed), seed, START)
    archive = ArchiveStore(root)
    archive.recover()
    offset = 0
    for batch in sim.days(days):
        rows = []
        for raw in sim.encode(batch):
            rows.append(PendingRow(parse_transaction(raw), 0, offset))
            offset += 1
        archive.commit(rows, {"transactions:0": offset})
    return archive
