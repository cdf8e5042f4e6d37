"""`equilibrate snapshot` against the session's real Redis: rows, bounded cycles, daily rotation, restarts."""

from __future__ import annotations

import csv
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from redis.typing import EncodableT, FieldT

from equilibrate.features.compute import FEATURES
from equilibrate.features.store import WATERMARK_KEY, profile_key
from equilibrate.ops.heartbeat import read_heartbeats
from equilibrate.ops.net import free_port
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.keys import RISK_FIELDS
from equilibrate.settings import Settings
from equilibrate.storage import customer_registry, history, snapshot_index
from equilibrate.storage.snapshot import Snapshotter
from tests.conftest import run_cli, settings_env
from tests.processes import wait_until

DAY1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC)
RISK = {
    "risk_score": "73.5",
    "risk_level": "HIGH",
    "rule_score": "7",
    "hardship_type": "Income Shock",
    "reasons": 'Salary 12 days late; spending up 40%, "unusual"',
    "recommended_action": "offer_payment_holiday",
    "scored_at": "2026-03-01T11:59:00Z",
    "model_version": "rules-abc123",
}


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _set_watermark(client: redis.Redis, at: datetime) -> None:
    ms = _ms(at)
    client.hset(WATERMARK_KEY, mapping={"transactions:0": ms - 60_000, "transactions:1": ms})


def _features(i: int) -> dict[str, str]:
    return {name: str(i * 100 + j) for j, name in enumerate(FEATURES)}


def _populate(client: redis.Redis, ids: Sequence[str], *, risk: bool = True) -> None:
    customer_registry.register_ids(client, ids)
    with client.pipeline(transaction=False) as pipe:
        for i, cid in enumerate(ids):
            fields: dict[FieldT, EncodableT] = {"name": "Ann"}
            fields.update(_features(i))
            if risk:
                fields.update(RISK)
            pipe.hset(profile_key(cid), mapping=fields)
        pipe.execute()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


def _current(settings: Settings) -> Path:
    return history.current_path(settings.data_dir)


def _ids(n: int) -> list[str]:
    return [f"C{i:07d}" for i in range(1, n + 1)]


def test_columns() -> None:
    assert history.COLUMNS[:2] == ("snapshot_at", "customer_id")
    assert history.COLUMNS[2 : 2 + len(FEATURES)] == FEATURES
    assert set(history.COLUMNS[2 + len(FEATURES) :]) == set(RISK_FIELDS) - {"recommended_action"}
    for kept in ("risk_score", "risk_level", "rule_score", "hardship_type", "model_version", "scored_at", "reasons"):
        assert kept in history.COLUMNS


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+44 20 7946 0000", "'+44 20 7946 0000"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=cmd", "'\t=cmd"),
        ("-12.5", "-12.5"),
        ("+3", "+3"),
        ("-1e-05", "-1e-05"),
        ("Income Shock", "Income Shock"),
        ("line one\nline two", "line one line two"),
    ],
)
def test_cells_are_safe_for_spreadsheets(value: str, cell: str) -> None:
    assert history.safe_text(value) == cell


def test_row_format_quotes_text_and_leaves_numbers_bare() -> None:
    values: list[bytes | str | None] = [b"1"] * len(history.READ_FIELDS)
    values[history.READ_FIELDS.index("balance")] = b"-12.5"
    values[history.READ_FIELDS.index("reasons")] = 'late, "again"\n=cmd'
    values[history.READ_FIELDS.index("hardship_type")] = None
    line = history.format_row("2026-03-01T12:00:00Z", "100", values)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.startswith('"2026-03-01T12:00:00Z","100",1,')
    assert ",-12.5," in line
    assert '"late, ""again"" =cmd"' in line
    row = next(csv.reader([line]))
    assert row[history.COLUMNS.index("hardship_type")] == ""
    assert history.stamp_of_line(line) == "2026-03-01T12:00:00Z"
    assert history.stamp_of_line(history.header_line()) is None


def test_features_that_are_not_plain_numbers_take_the_careful_path() -> None:
    values: list[bytes | str | None] = [b"2"] * len(history.READ_FIELDS)
    values[history.READ_FIELDS.index("balance")] = b"=1+2"
    values[history.READ_FIELDS.index("income_30d")] = None
    values[history.READ_FIELDS.index("atm_spike")] = b"-1.5e-05"
    line = history.format_row("2026-03-01T12:00:00Z", "C1", values)
    row = dict(zip(history.COLUMNS, next(csv.reader([line])), strict=True))
    assert row["balance"] == "'=1+2"
    assert row["income_30d"] == ""
    assert row["atm_spike"] == "-1.5e-05"
    assert row["days_since_salary"] == "2"


@pytest.mark.parametrize(
    ("file_day", "header_ok", "rotate"),
    [(None, True, False), ("2026-03-01", True, False), ("2026-02-28", True, True), (None, False, True)],
)
def test_when_the_current_file_is_set_aside(file_day: str | None, header_ok: bool, rotate: bool) -> None:
    assert history.needs_rotation(file_day, header_ok, "2026-03-01") is rotate


def test_a_pass_writes_one_row_per_customer_with_features(settings: Settings, redis_client: redis.Redis) -> None:
    ids = _ids(20)
    _populate(redis_client, ids)
    customer_registry.register(redis_client, [{"customer_id": "C9000001", "name": "No Events Yet"}])
    customer_registry.register_ids(redis_client, ["C9000002"])  # no hash at all
    risky = "C0000003"
    redis_client.hset(
        profile_key(risky),
        mapping={"balance": "-12.5", "reasons": '=HYPERLINK("http://x","click")', "hardship_type": "@SUM(A1)"},
    )
    _set_watermark(redis_client, DAY1)

    report = Snapshotter(settings, StopFlag()).run_once()

    path = _current(settings)
    assert report.complete
    assert report.line == f"snapshot: 20 customers at 2026-03-01T12:00:00Z -> {path}"
    assert _header(path) == list(history.COLUMNS)
    rows = _rows(path)
    assert sorted(r["customer_id"] for r in rows) == ids
    assert {r["snapshot_at"] for r in rows} == {"2026-03-01T12:00:00Z"}
    by_id = {r["customer_id"]: r for r in rows}
    first = by_id["C0000001"]
    assert {name: first[name] for name in FEATURES} == _features(0)
    assert {name: first[name] for name in history.RISK_COLUMNS} == {k: RISK[k] for k in history.RISK_COLUMNS}
    assert "recommended_action" not in first and "name" not in first
    assert by_id[risky]["balance"] == "-12.5"
    assert by_id[risky]["reasons"] == '\'=HYPERLINK("http://x","click")'
    assert by_id[risky]["hardship_type"] == "'@SUM(A1)"
    assert len(path.read_text().splitlines()) == 21  # one line per row: spreadsheets and `wc -l` agree
    cp = history.Checkpoint.loads(history.state_path(settings.data_dir).read_bytes())
    assert cp.done and cp.day == "2026-03-01" and cp.rows == 20 and cp.size == path.stat().st_size


@pytest.mark.parametrize("numeric_ids", [True, False], ids=["intset", "hashtable"])
def test_a_pass_is_cut_into_cycles_that_never_read_more_than_the_batch(
    settings: Settings, redis_client: redis.Redis, numeric_ids: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Integer ids make a small set an intset, for which SSCAN returns every member at once.
    ids = [str(100 + i) for i in range(300)] if numeric_ids else _ids(300)
    _populate(redis_client, ids)
    _set_watermark(redis_client, DAY1)
    snap = Snapshotter(settings.model_copy(update={"snapshot_batch": 40}), StopFlag())
    reads: list[int] = []
    real_read = snap.read

    def spy(batch: Sequence[str]) -> list[list[bytes | None]]:
        reads.append(len(batch))
        return real_read(batch)

    monkeypatch.setattr(snap, "read", spy)
    snap.recover()
    assert snap.begin() is None
    cycles = 0
    while snap.in_pass:
        snap.cycle()
        cycles += 1
        assert cycles < 100
    assert max(reads) <= 40
    assert sum(reads) == 300
    assert cycles >= 8
    rows = _rows(_current(settings))
    assert sorted(r["customer_id"] for r in rows) == sorted(ids)


def test_the_file_rotates_when_the_watermark_reaches_the_next_day(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _populate(redis_client, _ids(5))
    snap = Snapshotter(settings, StopFlag())
    _set_watermark(redis_client, DAY1)
    snap.run_once()
    _set_watermark(redis_client, DAY1 + timedelta(hours=6))
    snap.run_once()
    _set_watermark(redis_client, DAY2)
    report = snap.run_once()

    assert report.line.startswith("snapshot: 5 customers at 2026-03-02T00:00:05Z")
    old = settings.data_dir / "customer_history-2026-03-01.csv"
    assert _header(old) == list(history.COLUMNS)
    assert [r["snapshot_at"] for r in _rows(old)] == ["2026-03-01T12:00:00Z"] * 5 + ["2026-03-01T18:00:00Z"] * 5
    current = _current(settings)
    assert _header(current) == list(history.COLUMNS)
    assert [r["snapshot_at"] for r in _rows(current)] == ["2026-03-02T00:00:05Z"] * 5


@pytest.mark.parametrize(
    ("day", "today", "keep", "gone"),
    [
        ("2026-03-01", "2026-03-04", 2, True),
        ("2026-03-02", "2026-03-04", 2, False),  # exactly `keep` days before: kept
        ("2026-01-01", "2026-03-04", 0, False),  # 0 keeps every day
    ],
)
def test_retention_counts_event_days(day: str, today: str, keep: int, gone: bool) -> None:
    assert history.expired(day, today, keep) is gone


def test_rotated_day_reads_only_finished_history_files() -> None:
    assert history.rotated_day("customer_history-2026-03-01.csv") == "2026-03-01"
    assert history.rotated_day("customer_history-2026-03-01.2.csv") == "2026-03-01"
    assert history.rotated_day("customer_history.csv") is None
    assert history.rotated_day("customer_history-notes.csv") is None


def test_days_past_retention_are_deleted_with_their_index_when_a_day_closes(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _populate(redis_client, _ids(3))
    snap = Snapshotter(settings.model_copy(update={"history_retention_days": 1}), StopFlag())
    for day in range(4):  # 1 to 4 March, one pass a day
        _set_watermark(redis_client, DAY1 + timedelta(days=day))
        snap.run_once()
    kept = sorted(p.name for p in settings.data_dir.glob("customer_history-*.csv"))
    assert kept == ["customer_history-2026-03-03.csv"]  # 4 March is current; 1 and 2 March are over a day old
    index = sorted(p.name for p in snapshot_index.index_root(settings.data_dir).iterdir())
    assert index == ["2026-03-03", "2026-03-04"]
    assert [r["snapshot_at"] for r in _rows(_current(settings))] == ["2026-03-04T12:00:00Z"] * 3


def test_a_restart_keeps_the_current_files_day(settings: Settings, redis_client: redis.Redis) -> None:
    _populate(redis_client, _ids(3))
    for at in (DAY1, DAY1 + timedelta(hours=1)):
        _set_watermark(redis_client, at)
        Snapshotter(settings, StopFlag()).run_once()  # a new process each time
    assert len(_rows(_current(settings))) == 6
    assert not list(settings.data_dir.glob("customer_history-*"))

    _set_watermark(redis_client, DAY2)
    Snapshotter(settings, StopFlag()).run_once()
    assert len(_rows(settings.data_dir / "customer_history-2026-03-01.csv")) == 6

    # Without its sidecar the day comes from the last row.
    history.state_path(settings.data_dir).unlink()
    _set_watermark(redis_client, DAY2 + timedelta(days=1))
    Snapshotter(settings, StopFlag()).run_once()
    assert [r["snapshot_at"] for r in _rows(settings.data_dir / "customer_history-2026-03-02.csv")] == [
        "2026-03-02T00:00:05Z"
    ] * 3
    assert {r["snapshot_at"] for r in _rows(_current(settings))} == {"2026-03-03T00:00:05Z"}


def test_a_new_column_set_starts_a_new_file(settings: Settings, redis_client: redis.Redis) -> None:
    _populate(redis_client, _ids(2))
    settings.data_dir.mkdir(parents=True)
    _current(settings).write_text('"snapshot_at","customer_id","old_feature"\n"2026-03-01T06:00:00Z","C0000001",1\n')
    _set_watermark(redis_client, DAY1)
    Snapshotter(settings, StopFlag()).run_once()
    assert _header(settings.data_dir / "customer_history-2026-03-01.csv")[2] == "old_feature"
    assert _header(_current(settings)) == list(history.COLUMNS)
    assert len(_rows(_current(settings))) == 2


def test_a_pass_is_not_repeated_while_the_watermark_stands_still(settings: Settings, redis_client: redis.Redis) -> None:
    _populate(redis_client, _ids(4))
    _set_watermark(redis_client, DAY1)
    Snapshotter(settings, StopFlag()).run_once()
    report = Snapshotter(settings, StopFlag()).run_once()
    assert report.complete and "nothing new since 2026-03-01T12:00:00Z" in report.line
    assert len(_rows(_current(settings))) == 4


def test_no_watermark_no_snapshot(settings: Settings, redis_client: redis.Redis) -> None:
    _populate(redis_client, _ids(4))
    report = Snapshotter(settings, StopFlag()).run_once()
    assert "no stream watermark yet" in report.line
    assert not _current(settings).exists()


def test_a_stop_between_cycles_then_a_restart_finishes_the_same_pass(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _ids(50)
    _populate(redis_client, ids)
    _set_watermark(redis_client, DAY1)
    stop = StopFlag()
    snap = Snapshotter(settings.model_copy(update={"snapshot_batch": 10}), stop)
    reads: list[int] = []
    real_read = snap.read

    def read_then_stop(batch: Sequence[str]) -> list[list[bytes | None]]:
        reads.append(len(batch))
        if len(reads) == 2:
            stop.set()  # a SIGTERM arrives during the second cycle
        return real_read(batch)

    monkeypatch.setattr(snap, "read", read_then_stop)
    snap.run()
    assert len(reads) == 2  # the cycle in progress finished, no further one started
    assert len(_rows(_current(settings))) == 20

    _set_watermark(redis_client, DAY1 + timedelta(minutes=5))  # the resumed pass keeps its own stamp
    report = Snapshotter(settings, StopFlag()).run_once()
    assert report.line.startswith("snapshot: 50 customers at 2026-03-01T12:00:00Z")
    rows = _rows(_current(settings))
    assert sorted(r["customer_id"] for r in rows) == ids
    assert {r["snapshot_at"] for r in rows} == {"2026-03-01T12:00:00Z"}


def test_a_crash_after_a_write_before_its_checkpoint_writes_no_row_twice(
    settings: Settings, redis_client: redis.Redis
) -> None:
    ids = _ids(50)
    _populate(redis_client, ids)
    _set_watermark(redis_client, DAY1)
    snap = Snapshotter(settings.model_copy(update={"snapshot_batch": 10}), StopFlag())
    snap.recover()
    snap.begin()
    snap.cycle()
    snap.cycle()
    snap.writer.close()
    with _current(settings).open("a") as fh:  # the third cycle's rows landed, the process died
        fh.write('"2026-03-01T12:00:00Z","C0000021",1,2,3\n"2026-03-01T12:00:00Z","C00')

    report = Snapshotter(settings, StopFlag()).run_once()
    assert report.line.startswith("snapshot: 50 customers at 2026-03-01T12:00:00Z")
    rows = _rows(_current(settings))
    assert sorted(r["customer_id"] for r in rows) == ids
    assert all(r["model_version"] == "rules-abc123" for r in rows)


def test_redis_going_away_mid_pass_is_waited_for(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    _populate(redis_client, _ids(30))
    _set_watermark(redis_client, DAY1)
    snap = Snapshotter(settings.model_copy(update={"snapshot_batch": 10}), StopFlag())
    real_sscan = snap.redis.sscan
    failures = iter([True, False, True])

    def flaky_sscan(*args: object, **kwargs: object) -> object:
        if next(failures, False):
            raise redis.ConnectionError("connection reset by peer")
        return real_sscan(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(snap.redis, "sscan", flaky_sscan)
    report = snap.run_once()
    assert report.complete
    assert sorted(r["customer_id"] for r in _rows(_current(settings))) == _ids(30)


def test_the_loop_snapshots_each_interval_with_heartbeats(settings: Settings, redis_client: redis.Redis) -> None:
    _populate(redis_client, _ids(12))
    _set_watermark(redis_client, DAY1)
    fast = settings.model_copy(update={"snapshot_interval_s": 0.2, "snapshot_batch": 5, "heartbeat_interval_s": 0.1})
    stop = StopFlag()
    snap = Snapshotter(fast, stop)
    thread = threading.Thread(target=snap.run, daemon=True)
    thread.start()
    try:
        path = _current(settings)
        wait_until(lambda: path.exists() and len(_rows(path)) == 12, 20, "the first pass")
        _set_watermark(redis_client, DAY1 + timedelta(minutes=1))
        wait_until(lambda: len(_rows(path)) == 24, 20, "the second pass")
        wait_until(
            lambda: any(b["name"] == "snapshot" and b.get("passes", 0) >= 2 for b in read_heartbeats(redis_client)),
            20,
            "a heartbeat with two passes",
        )
        beat = next(b for b in read_heartbeats(redis_client) if b["name"] == "snapshot")
        assert beat["rows"] == 24 and beat["alive"]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert not [b for b in read_heartbeats(redis_client) if b["name"] == "snapshot"]
    assert len(_rows(_current(settings))) == 24  # the idle passes in between wrote nothing


def test_cli_once_prints_a_summary_and_writes_the_file(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    _populate(redis_client, _ids(5))
    _set_watermark(redis_client, DAY1)
    result = run_cli("snapshot", "--once", env=settings_env(settings), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = _current(settings)
    assert result.stdout.strip() == f"snapshot: 5 customers at 2026-03-01T12:00:00Z -> {path}"
    assert "Traceback" not in result.stderr
    assert len(_rows(path)) == 5


def test_cli_with_redis_down_prints_one_line(settings: Settings, tmp_path: Path) -> None:
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = run_cli("snapshot", "--once", env=settings_env(down), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("equilibrate snapshot: Redis does not answer")
    assert not _current(settings).exists()
