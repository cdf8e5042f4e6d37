"""The snapshot index (storage/snapshot_index.py) as `equilibrate snapshot` writes it, on the real Redis;
and the console's history readers (dashboard/files.py) drawing the same charts from it as from the CSV.

    .venv/bin/pytest -q tests/storage/test_snapshot_index.py
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pytest
import redis

from equilibrate.dashboard import files
from equilibrate.features.store import WATERMARK_KEY, profile_key
from equilibrate.ops.stopping import StopFlag
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry, history, snapshot_index
from equilibrate.storage.snapshot import Snapshotter
from tests.storage.test_snapshot import _features

DAY1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEVELS = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
HARDSHIPS = ("None", "Income Shock", "Overspending")


def _set_watermark(client: redis.Redis, at: datetime) -> None:
    client.hset(WATERMARK_KEY, mapping={"transactions:0": int(at.timestamp() * 1000)})


def _ids(n: int) -> list[str]:
    return [f"C{i:07d}" for i in range(1, n + 1)]


def _score(pass_no: int, i: int) -> float:
    return round((i * 7 + pass_no * 13) % 100 + 0.5, 1)


def _write_pass(client: redis.Redis, ids: Sequence[str], pass_no: int, *, unscored: int = 0) -> None:
    """Every customer's features and a score that moves from pass to pass; the last `unscored` have no risk."""
    customer_registry.register_ids(client, ids)
    with client.pipeline(transaction=False) as pipe:
        for i, cid in enumerate(ids):
            fields: dict[str, str] = dict(_features(i))
            if i < len(ids) - unscored:
                fields |= {
                    "risk_score": str(_score(pass_no, i)),
                    "risk_level": LEVELS[(i + pass_no) % len(LEVELS)],
                    "hardship_type": HARDSHIPS[i % len(HARDSHIPS)],
                }
            pipe.hset(profile_key(cid), mapping=fields)  # type: ignore[arg-type]
        pipe.execute()


def _passes(settings: Settings, client: redis.Redis, ids: Sequence[str], stamps: Sequence[datetime]) -> None:
    for n, at in enumerate(stamps):
        _write_pass(client, ids, n, unscored=2)
        _set_watermark(client, at)
        assert Snapshotter(settings.model_copy(update={"snapshot_batch": 7}), StopFlag()).run_once().complete


def _without_index(data_dir: Path) -> None:
    shutil.rmtree(snapshot_index.index_root(data_dir))


def _scores_file(data_dir: Path, stamp: str) -> pa.Table:
    with pa.memory_map(str(snapshot_index.scores_path(data_dir, stamp))) as source:
        return pa.ipc.open_file(source).read_all()


def _same(left: pd.DataFrame, right: pd.DataFrame, by: Sequence[str]) -> None:
    a = left.sort_values(list(by)).reset_index(drop=True)
    b = right.sort_values(list(by)).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


STAMPS = [DAY1, DAY1 + timedelta(minutes=15), DAY1 + timedelta(hours=12, minutes=5), DAY1 + timedelta(days=1)]


def test_each_pass_leaves_its_counts_and_its_scores_sorted_by_customer(
    settings: Settings, redis_client: redis.Redis
) -> None:
    ids = _ids(30)
    _passes(settings, redis_client, ids, STAMPS[:2])

    assert snapshot_index.days(settings.data_dir) == ["2026-03-01"]
    counts = snapshot_index.level_counts(settings.data_dir, ["2026-03-01"])
    assert [c["snapshot_at"] for c in counts] == ["2026-03-01T12:00:00Z", "2026-03-01T12:15:00Z"]
    for n, entry in enumerate(counts):
        expected = {lv: 0 for lv in LEVELS} | {"": 2}
        for i in range(len(ids) - 2):
            expected[LEVELS[(i + n) % len(LEVELS)]] += 1
        assert entry["levels"] == {k: v for k, v in expected.items() if v}
        assert entry["customers"] == 30
        assert sum(entry["hardships"].values()) == 30 and entry["hardships"][""] == 2

    table = _scores_file(settings.data_dir, "2026-03-01T12:15:00Z")
    assert table.column_names == list(snapshot_index.FILE_COLUMNS)
    assert table.column("customer_id").to_pylist() == sorted(ids)
    by_id = dict(zip(table.column("customer_id").to_pylist(), table.column("risk_score").to_pylist(), strict=True))
    assert by_id["C0000005"] == _score(1, 4)
    assert by_id["C0000030"] is None  # no risk fields: an empty cell, as the CSV has it


def test_the_console_draws_the_same_charts_from_the_index_as_from_the_csv(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ids(25)
    _passes(settings, redis_client, ids, STAMPS)  # two event days: one rotated file, the current one
    data = settings.data_dir
    assert snapshot_index.days(data) == ["2026-03-01", "2026-03-02"]

    def no_csv(paths: Sequence[Path], columns: Sequence[str]) -> pa.Table:
        raise AssertionError(f"read the whole CSV {paths}")

    with monkeypatch.context() as m:
        m.setattr(files, "_read_history", no_csv)
        levels = files.levels_over_time(data)
        scores = files.score_history(data, "C0000004")
        one_day = files.levels_over_time(data, limit=1)
        missing = files.score_history(data, "C9999999")

    assert missing.empty and list(missing.columns) == ["snapshot_at", "risk_score", "risk_level"]
    assert set(one_day["snapshot_at"].dt.strftime("%Y-%m-%d")) == {"2026-03-02"}
    assert scores["risk_score"].tolist() == [_score(n, 3) for n in range(len(STAMPS))]
    assert scores["snapshot_at"].is_monotonic_increasing

    _without_index(data)  # what the console drew before the index: every customer's rows
    _same(levels, files.levels_over_time(data), ["snapshot_at", "risk_level"])
    _same(scores, files.score_history(data, "C0000004"), ["snapshot_at"])
    _same(one_day, files.levels_over_time(data, limit=1), ["snapshot_at", "risk_level"])


def test_days_written_before_the_index_are_still_read_from_their_files(
    settings: Settings, redis_client: redis.Redis
) -> None:
    ids = _ids(12)
    _passes(settings, redis_client, ids, STAMPS)
    data = settings.data_dir
    whole_levels, whole_scores = files.levels_over_time(data), files.score_history(data, "C0000002")
    shutil.rmtree(snapshot_index.index_root(data) / "2026-03-01")  # that day's passes ran before the upgrade

    _same(whole_levels, files.levels_over_time(data), ["snapshot_at", "risk_level"])
    _same(whole_scores, files.score_history(data, "C0000002"), ["snapshot_at"])
    assert set(files.levels_over_time(data, limit=1)["snapshot_at"].dt.day) == {2}


def test_a_restarted_pass_is_indexed_once_with_every_customer(settings: Settings, redis_client: redis.Redis) -> None:
    ids = _ids(40)
    _passes(settings, redis_client, ids, STAMPS[:1])
    _write_pass(redis_client, ids, 1)
    _set_watermark(redis_client, STAMPS[1])
    snap = Snapshotter(settings.model_copy(update={"snapshot_batch": 10}), StopFlag())
    snap.recover()
    assert snap.begin() is None
    snap.cycle()
    snap.cycle()
    snap.writer.close()  # the process stops mid-pass; the next one does not know where the pass began

    assert Snapshotter(settings, StopFlag()).run_once().complete
    stamp = "2026-03-01T12:15:00Z"
    table = _scores_file(settings.data_dir, stamp)
    assert table.column("customer_id").to_pylist() == ids
    assert table.schema.metadata == {b"snapshot_at": stamp.encode()}
    counts = snapshot_index.level_counts(settings.data_dir, ["2026-03-01"])
    assert [c["customers"] for c in counts] == [40, 40]


def test_a_pass_indexed_twice_counts_once(settings: Settings, redis_client: redis.Redis) -> None:
    _passes(settings, redis_client, _ids(9), STAMPS[:1])
    stamp = "2026-03-01T12:00:00Z"
    path = history.current_path(settings.data_dir)
    snapshot_index.write_pass(settings.data_dir, path, stamp)  # a crash before the checkpoint said done
    levels_file = snapshot_index.day_dir(settings.data_dir, stamp) / snapshot_index.LEVELS_NAME
    with levels_file.open("ab") as fh:
        fh.write(b'{"snapshot_at": "2026-03-01T12:')  # and a line cut short by a crash
    lines = levels_file.read_bytes().splitlines()
    assert len(lines) == 3 and orjson.loads(lines[0]) == orjson.loads(lines[1])
    assert [c["customers"] for c in snapshot_index.level_counts(settings.data_dir, ["2026-03-01"])] == [9]
    assert files.levels_over_time(settings.data_dir)["customers"].sum() == 9


@pytest.mark.parametrize("chunk", [16, 100, 1 << 20])
def test_the_start_of_the_last_pass_is_found_from_the_end(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_index, "TAIL_CHUNK", chunk)
    values: list[bytes | str | None] = [b"1"] * len(history.READ_FIELDS)
    first = [history.format_row("2026-03-01T12:00:00Z", f"C{i}", values) for i in range(3)]
    second = [history.format_row("2026-03-01T12:15:00Z", f"C{i}", values) for i in range(4)]
    path = tmp_path / "h.csv"
    head = history.header_line() + "".join(first)
    path.write_text(head + "".join(second))
    assert snapshot_index.pass_start(path, "2026-03-01T12:15:00Z") == len(head.encode())
    assert snapshot_index.pass_start(path, "2026-03-01T12:00:00Z") == path.stat().st_size  # not the last pass
    path.write_text("".join(second))  # no header, every line the pass's
    assert snapshot_index.pass_start(path, "2026-03-01T12:15:00Z") == 0


def test_build_indexes_a_history_written_before_the_index(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_index, "BUILD_BLOCK", 2048)  # passes spread over several batches
    _passes(settings, redis_client, _ids(8), STAMPS)
    data = settings.data_dir
    before, scores = files.levels_over_time(data), files.score_history(data, "C0000003")
    _without_index(data)
    assert snapshot_index.main([str(data)]) == 0
    assert snapshot_index.days(data) == ["2026-03-01", "2026-03-02"]
    assert len(snapshot_index.level_counts(data, ["2026-03-01", "2026-03-02"])) == len(STAMPS)
    _same(before, files.levels_over_time(data), ["snapshot_at", "risk_level"])
    _same(scores, files.score_history(data, "C0000003"), ["snapshot_at"])
