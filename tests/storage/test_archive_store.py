"""Archive commits survive crashes at any point: orphans removed, offsets exact."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from equilibrate.schema import parse_transaction
from equilibrate.storage.archive_store import ArchiveStore, PendingRow
from tests.factories import encode, stream


def _rows(n_customers: int, per: int, prefix: str = "T") -> list[PendingRow]:
    return [
        PendingRow(parse_transaction(encode(e)), 0, i) for i, e in enumerate(stream(n_customers, per, prefix=prefix))
    ]


def test_commit_partitions_by_event_date_and_reads_back(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    store.recover()
    rows = _rows(5, 12)  # 12 events 7h apart: several event dates
    store.commit(rows, {"transactions:0": len(rows)})
    dates = store.dates()
    assert len(dates) >= 3
    table = store.read()
    assert table.num_rows == len(rows)
    assert sorted(table.column("txn_id").to_pylist()) == sorted(r.txn.txn_id for r in rows)
    for part in store.committed_files():
        day = part.parent.name.removeprefix("date=")
        assert {t.date().isoformat() for t in pq.read_table(part).column("ts").to_pylist()} == {day}


def test_recover_removes_parts_of_an_uncommitted_flush_and_keeps_offsets(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    store.recover()
    first = _rows(3, 4, "A")
    store.commit(first, {"transactions:0": 12, "transactions:1": 5})
    # A crash after the part files of flush 2 were written but before its manifest landed:
    committed = store.committed_files()[0]
    orphan = committed.parent / "part-00000002.parquet"
    orphan.write_bytes(committed.read_bytes())
    (committed.parent / "part-00000003.tmp").write_bytes(b"half written")

    again = ArchiveStore(tmp_path)
    state = again.recover()
    assert state.seq == 1
    assert state.next_offset("transactions", 0) == 12
    assert state.next_offset("transactions", 1) == 5
    assert state.next_offset("transactions", 2) is None
    assert not orphan.exists()
    assert not list(tmp_path.rglob("*.tmp"))
    assert again.read().num_rows == len(first)


def test_offsets_are_cumulative_across_flushes(tmp_path: Path) -> None:
    store = ArchiveStore(tmp_path)
    store.recover()
    store.commit(_rows(2, 2, "A"), {"t:0": 4})
    store.commit(_rows(2, 2, "B"), {"t:1": 9})
    state = ArchiveStore(tmp_path).recover()
    assert state.offsets == {"t:0": 4, "t:1": 9}
    assert state.rows == 8
    assert set(ArchiveStore(tmp_path).recent_txn_ids(100)) == {r for r in store.read().column("txn_id").to_pylist()}
