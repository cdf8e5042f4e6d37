"""A simulated bank's raw archive, written directly (no broker): the input of the model tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from equilibrate.sources.direct_archive import simulate_into_archive
from equilibrate.storage.archive_store import ArchiveStore

START = datetime(2026, 1, 1, tzinfo=UTC)


def simulated_archive(root: Path, customers: int, days: int, seed: int = 11) -> ArchiveStore:
    return simulate_into_archive(root, customers, days, seed=seed, start=START)
