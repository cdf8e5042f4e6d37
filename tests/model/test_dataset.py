"""Point-in-time training data: features as they stood at the snapshot, labels from after it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from equilibrate.features.compute import FEATURES, compute
from equilibrate.features.rebuild import fold_archive
from equilibrate.features.table import EVENT_COLUMNS
from equilibrate.model.dataset import (
    DAYS_TO_MISSED,
    HORIZON_DAYS,
    LABEL,
    MIN_HISTORY_DAYS,
    SNAPSHOT_EVERY_DAYS,
    PointInTime,
    day_number,
    snapshot_days,
)
from equilibrate.schema import CREDIT_REPAYMENT
from equilibrate.storage.archive_store import ArchiveStore
from tests.model.conftest import Trained


def _mismatches(dataset: pa.Table, archive: ArchiveStore, sample: int = 3) -> list[str]:
    """Recompute sampled rows from only the events before the end of their snapshot day."""
    found = []
    dates = sorted(set(dataset.column("snapshot_date").to_pylist()))
    for snap in dates[:: max(1, len(dates) // sample)][:sample]:
        end = datetime.combine(snap, time(), UTC).timestamp() * 1000 + 86_400_000
        built = fold_archive(archive, until_ms=int(end))
        index = {cid: i for i, cid in enumerate(built.ids)}
        rows = dataset.filter(pc.equal(dataset.column("snapshot_date"), pa.scalar(snap, pa.date32())))
        ids = rows.column("customer_id").to_pylist()[:50]
        records = built.records[[index[c] for c in ids]]
        truth = compute(records, np.full(len(ids), day_number(snap), dtype=np.int64))
        for name in FEATURES:
            got = np.asarray(rows.column(name).to_pylist()[:50], dtype=np.float64)
            if not np.allclose(got, truth[name], equal_nan=True):
                found.append(f"{snap} {name}")
    return found


def test_features_are_exactly_what_the_events_before_the_snapshot_give(trained: Trained) -> None:
    assert _mismatches(trained.dataset, trained.archive) == []


def test_a_feature_computed_after_the_snapshot_is_caught(trained: Trained) -> None:
    """The same check fails a dataset whose snapshots saw one day too many (leakage)."""
    days = trained.archive.dates()
    target = snapshot_days(day_number(days[0]), day_number(days[-1]))[2]
    pit = PointInTime()
    for day, table in trained.archive.iter_days(EVENT_COLUMNS):
        pit.add(table)
        if day_number(day) == target + 1:  # folded the next day before taking the snapshot
            pit.snapshot(target)
            break
    leaky = pit.table()
    assert _mismatches(leaky, trained.archive, sample=1)


def test_labels_look_30_days_ahead_and_delinquent_customers_are_left_out(trained: Trained) -> None:
    data = trained.dataset
    table = trained.archive.read(["customer_id", "ts", "category", "status"])
    failed = pc.and_(
        pc.equal(table.column("status"), "failed"),
        pc.is_in(table.column("category"), pa.array([c.value for c in CREDIT_REPAYMENT])),
    )
    misses: dict[str, list[int]] = {}
    for cid, ts in zip(
        table.filter(failed).column("customer_id").to_pylist(),
        table.filter(failed).column("ts").to_pylist(),
        strict=True,
    ):
        misses.setdefault(cid, []).append(day_number(ts.date()))
    assert misses, "the simulation must contain missed payments"
    labels = data.column(LABEL).to_pylist()
    ahead = data.column(DAYS_TO_MISSED).to_pylist()
    for cid, snap, label, days_ahead in zip(
        data.column("customer_id").to_pylist(), data.column("snapshot_date").to_pylist(), labels, ahead, strict=True
    ):
        d = day_number(snap)
        mine = misses.get(cid, [])
        assert not any(d - HORIZON_DAYS < m <= d for m in mine), "delinquent at the snapshot: must be left out"
        coming = [m - d for m in mine if d < m <= d + HORIZON_DAYS]
        assert label == (1 if coming else 0)
        assert (days_ahead is None and not coming) or days_ahead == min(coming)
    rate = sum(labels) / len(labels)
    assert 0.003 < rate < 0.1
    snaps = sorted({day_number(s) for s in data.column("snapshot_date").to_pylist()})
    first, last = day_number(trained.archive.dates()[0]), day_number(trained.archive.dates()[-1])
    assert snaps[0] == first + MIN_HISTORY_DAYS and snaps[-1] <= last - HORIZON_DAYS
    assert set(np.diff(snaps).tolist()) == {SNAPSHOT_EVERY_DAYS}


def test_an_archive_too_short_for_a_snapshot_is_refused() -> None:
    assert snapshot_days(100, 150) == []
    with pytest.raises(Exception, match="at least"):
        from equilibrate.model.dataset import build

        build(iter(()), date(2026, 1, 1), date(2026, 2, 1))
