"""Batch path: rebuild every profile from the Parquet archive with the stream's own code.

The archive holds each accepted event once; folding them with `apply_events` gives the same
records as the stream did (the fold is order- and batch-independent), so the profiles are equal
field for field. The engine's offsets and watermarks are set to what the archive covers, so a
stream engine started afterwards continues exactly where the archive ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis

from equilibrate.features import store
from equilibrate.features.compute import compute, format_profiles
from equilibrate.features.state import Records, apply_events, new_records, pack
from equilibrate.features.table import EVENT_COLUMNS, table_events
from equilibrate.storage.archive_store import ArchiveStore

log = logging.getLogger(__name__)


@dataclass
class RebuiltStates:
    ids: list[str]
    records: Records
    late: int


def fold_archive(archive: ArchiveStore, until_ms: int | None = None) -> RebuiltStates:
    """Every customer's record from the archive, optionally only events before `until_ms`."""
    index: dict[str, int] = {}
    records = new_records(1024)
    late = 0
    for _day, day_rows in archive.iter_days(EVENT_COLUMNS):
        table = (
            day_rows if until_ms is None else day_rows.filter(pc.less(day_rows.column("ts").cast(pa.int64()), until_ms))
        )
        if not table.num_rows:
            continue
        events, _added = table_events(table, index)
        if len(index) > len(records):
            grown = new_records(max(len(index), 2 * len(records)))
            grown[: len(records)] = records
            records = grown
        late += apply_events(records[: len(index)], events)
    return RebuiltStates(list(index), records[: len(index)], late)


def partition_positions(
    archive: ArchiveStore, table_topic: str
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Offsets the archive covers and the newest event time per source partition."""
    state = archive.load()
    offsets = {}
    for key, off in state.offsets.items():
        topic, _, part = key.rpartition(":")
        if topic == table_topic:
            offsets[(topic, int(part))] = int(off)
    marks: dict[tuple[str, int], int] = {}
    table = archive.read(["ts", "source_partition"])
    if table.num_rows:
        parts = table.column("source_partition").to_numpy()
        ms = table.column("ts").cast(pa.int64()).to_numpy()
        for p in np.unique(parts).tolist():
            marks[(table_topic, int(p))] = int(ms[parts == p].max())
    return offsets, marks


def rebuild(
    client: redis.Redis,
    archive: ArchiveStore,
    topic: str,
    *,
    set_offsets: bool = True,
    updated_at: datetime | None = None,
) -> RebuiltStates:
    """Recompute and write every profile the archive knows; return what was rebuilt."""
    archive.load()
    built = fold_archive(archive)
    if built.ids:
        profiles = format_profiles(built.records, compute(built.records), updated_at)
        store.write_rebuilt(client, built.ids, [pack(r) for r in built.records], profiles)
    if set_offsets:
        offsets, marks = partition_positions(archive, topic)
        store.set_positions(client, offsets, marks)
    log.info(
        "rebuilt %d profiles from %d archived rows (%d too old for the windows)",
        len(built.ids),
        archive.state.rows,
        built.late,
    )
    return built
