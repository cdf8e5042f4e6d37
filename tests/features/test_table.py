"""Archive rows to event columns: the same arrays `to_arrays` makes from the same transactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from equilibrate.features.state import to_arrays
from equilibrate.features.table import EVENT_COLUMNS, table_events
from equilibrate.schema import parse_transaction
from equilibrate.storage.archive_store import ArchiveStore, PendingRow
from tests.factories import encode, varied_stream


def test_archived_rows_become_the_same_event_columns(tmp_path: Path) -> None:
    events = varied_stream(12, 60, seed=5)
    txns = [parse_transaction(encode(e)) for e in events]
    archive = ArchiveStore(tmp_path / "archive")
    archive.recover()
    archive.commit([PendingRow(t, 0, i) for i, t in enumerate(txns)], {})
    table = archive.read(EVENT_COLUMNS)
    back = [parse_transaction(encode(e)) for e in events]
    order = {t.txn_id: i for i, t in enumerate(back)}
    rows = [order[t] for t in archive.read(["txn_id"]).column(0).to_pylist()]  # the archive's row order
    index: dict[str, int] = {"C-already-known": 0}
    got, added = table_events(table, index)
    assert added == [c for c in dict.fromkeys(back[r].customer_id for r in rows)]
    expected = to_arrays([back[r] for r in rows], [index[back[r].customer_id] for r in rows])
    for name in ("cust", "day", "ms", "minute", "units", "kind", "gambling", "failed", "bal_p"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name
    assert len(set(expected.kind.tolist())) >= 5  # the stream covers most kinds of event
