"""The intervention audit log: hash chain, tamper detection, concurrent writers, monthly rotation, export, CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import logging
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from equilibrate.alert.audit import (
    COLUMNS,
    GENESIS_HASH,
    AuditError,
    AuditRecord,
    decode_cell,
    encode_cell,
    format_checks,
    format_line,
)
from equilibrate.alert.audit_command import export
from equilibrate.alert.audit_log import CURRENT_NAME, TORN_NAME, AuditLog
from tests.conftest import run_cli

JAN = datetime(2026, 1, 31, 23, 59, 58, tzinfo=UTC)
TRICKY = '=HYPERLINK("x"), "quoted", comma\nनमस्ते प्रिया, आपका भुगतान\r\n\\ end'


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def record(n: int, customer: str = "C1", **overrides: object) -> AuditRecord:
    values: dict[str, object] = {
        "customer_id": customer,
        "action": "sent",
        "actor": "system",
        "case_id": f"case-{n}",
        "channel": "sms",
        "template_id": "budgeting_support.sms",
        "template_version": "3",
        "approval_ref": "CMP-2026-014",
        "language": "en",
        "message": f"Hi Priya, message {n}. Free help: MoneyHelper 0800 138 7777",
        "risk_score": 0.82,
        "risk_level": "HIGH",
        "hardship_type": "income_shock",
        "model_version": "v7",
        "reasons": "salary 40% lower; 3 gambling payments",
        "policy_checks": format_checks([("consent", "ok"), ("quiet_hours", "ok")]),
        "policy_result": "allowed",
        "delivery_status": "queued",
    }
    values.update(overrides)
    return AuditRecord(**values)  # type: ignore[arg-type]


def write_log(data_dir: Path, rows: int = 5, clock: Clock | None = None) -> AuditLog:
    log = AuditLog(data_dir, clock=clock or Clock(datetime(2026, 3, 4, 9, 0, tzinfo=UTC)))
    for n in range(rows):
        log.append(record(n))
    return log


def file_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def replace_line(path: Path, line: int, new: bytes) -> None:
    lines = file_lines(path)
    lines[line - 1] = new
    path.write_bytes(b"".join(lines))


def reviewer_check(path: Path) -> list[str]:
    """What a reviewer's own script does: any CSV reader, SHA-256 of the first 23 cells joined by U+001F."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(COLUMNS)
    prev = GENESIS_HASH
    for cells in rows[1:]:
        assert hashlib.sha256("\x1f".join(cells[:-1]).encode("utf-8")).hexdigest() == cells[-1]
        assert cells[-2] == prev
        prev = cells[-1]
    return [cells[0] for cells in rows[1:]]


# --- the chain ---------------------------------------------------------------------------------


def test_appended_rows_form_a_chain_a_reviewer_can_recompute(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=3)
    written = log.append_many([record(10), record(11, customer="C2")])
    assert [w.record.case_id for w in written] == ["case-10", "case-11"]
    assert written[1].prev_hash == written[0].row_hash

    result = log.verify()
    assert result.ok, result.summary()
    assert (result.rows, result.files, result.last_hash) == (5, 1, written[1].row_hash)
    assert result.summary().startswith("audit log OK: 5 rows in 1 file, chain intact (first ")
    assert reviewer_check(log.path) == [r.event_id for r in log.rows()]
    assert list(log.rows())[-1].record == replace(record(11, customer="C2"), event_id=written[1].event_id)


def test_every_field_reads_back_exactly(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=1)
    sent = record(1, customer="-C9", message=TRICKY, reasons="+3 late payments", detail="'quoted\x1fsep\x00")
    row = log.append(sent)
    back = list(log.rows())[-1]
    assert back.record == replace(sent, event_id=row.event_id)
    assert (back.row_hash, back.prev_hash, back.recorded_at) == (row.row_hash, row.prev_hash, row.recorded_at)
    assert log.verify().ok


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+44 7700 900123", "'+44 7700 900123"),
        ("-12.5", "-12.5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("'already", "''already"),
        ("a\nb\\c\x1f", "a\\nb\\\\c\\x1f"),
        ("\r=x", "\\r=x"),
        ("नमस्ते", "नमस्ते"),
    ],
)
def test_cells_are_spreadsheet_safe_and_reversible(text: str, cell: str) -> None:
    assert encode_cell(text) == cell
    assert decode_cell(cell) == text


def test_tricky_message_is_one_csv_record_and_round_trips(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.append(record(1, message=TRICKY, language="hi"))
    raw = log.path.read_bytes()
    assert raw.count(b"\n") == 2  # header + one row: one physical line each
    records = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert len(records) == 2
    message = records[1][COLUMNS.index("message")]
    assert message.startswith("'=HYPERLINK(")  # a spreadsheet shows it as text, never runs it
    assert [r.record.message for r in log.rows()] == [TRICKY]
    assert log.verify().ok


def test_records_are_validated() -> None:
    with pytest.raises(AuditError, match="lower-case word"):
        record(1, action="Sent!")
    with pytest.raises(AuditError, match="customer_id"):
        record(1, customer="")
    with pytest.raises(AuditError, match="finite"):
        record(1, risk_score=float("nan"))


# --- tampering ---------------------------------------------------------------------------------


def test_any_one_byte_changed_in_a_row_names_that_row(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=5)
    original = log.path.read_bytes()
    lines = file_lines(log.path)
    target = 4  # the third data row
    start = sum(len(line) for line in lines[: target - 1])
    for offset in range(start, start + len(lines[target - 1])):
        changed = bytearray(original)
        changed[offset] ^= 0x01
        log.path.write_bytes(bytes(changed))
        broken = log.verify().broken
        assert broken is not None, f"byte {offset - start} of the row changed unnoticed"
        assert (broken.source, broken.line) == (CURRENT_NAME, target), str(broken)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"message 2.", b"message 3.", "content changed"),
        (b"0.82", b"0.12", "content changed"),
        (b'"sms"', b'"app"', "content changed"),
    ],
)
def test_changed_field_is_named(tmp_path: Path, old: bytes, new: bytes, reason: str) -> None:
    log = write_log(tmp_path, rows=5)
    event = list(log.rows())[2].event_id
    replace_line(log.path, 4, file_lines(log.path)[3].replace(old, new, 1))
    result = log.verify()
    assert str(result.broken).startswith(f"{CURRENT_NAME} line 4 (event {event}): {reason}")
    assert result.verified == 2


def test_changed_hash_is_named(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=5)
    row = list(log.rows())[2]
    replace_line(log.path, 4, file_lines(log.path)[3].replace(row.row_hash.encode(), b"f" * 64))
    broken = log.verify().broken
    assert broken is not None and (broken.line, broken.event_id) == (4, row.event_id)


def test_rehashed_row_breaks_the_next_link(tmp_path: Path) -> None:
    """Someone who knows the rule edits a row and recomputes its hash: the next row no longer links."""
    log = write_log(tmp_path, rows=5)
    rows = list(log.rows())
    cells = list(rows[2].cells)
    cells[COLUMNS.index("message")] = "a message never sent"
    cells[-1] = hashlib.sha256("\x1f".join(cells[:-1]).encode()).hexdigest()
    replace_line(log.path, 4, format_line(cells).encode())
    broken = log.verify().broken
    assert broken is not None
    assert (broken.line, broken.event_id) == (5, rows[3].event_id)
    assert broken.reason.startswith("chain link broken")


def test_deleted_swapped_and_header_damage_are_detected(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=5)
    original = file_lines(log.path)
    events = [r.event_id for r in log.rows()]

    log.path.write_bytes(b"".join(original[:3] + original[4:]))  # delete the third row (line 4)
    broken = log.verify().broken
    assert broken is not None and (broken.line, broken.event_id) == (4, events[3])
    assert "chain link broken" in broken.reason

    log.path.write_bytes(b"".join([*original[:2], original[3], original[2], *original[4:]]))  # swap rows 2 and 3
    broken = log.verify().broken
    assert broken is not None and (broken.line, broken.event_id) == (3, events[2])

    log.path.write_bytes(b"".join(original[1:]))  # header removed
    broken = log.verify().broken
    assert broken is not None and broken.line == 1 and "header" in broken.reason

    log.path.write_bytes(original[0][20:] + b"".join(original[1:]))  # header cut short
    broken = log.verify().broken
    assert broken is not None and broken.line == 1 and "header" in broken.reason

    log.path.write_bytes(b"".join(original[:3]) + original[3].replace(b',"sms"', b"", 1) + b"".join(original[4:]))
    broken = log.verify().broken
    assert broken is not None and broken.line == 4 and "23 columns, expected 24" in broken.reason


def test_appends_refuse_a_file_that_is_not_the_log(tmp_path: Path) -> None:
    (tmp_path / CURRENT_NAME).write_text("name,amount\nx,1\n")
    with pytest.raises(AuditError, match=r"intervention_log\.csv line 1 is not the audit log header"):
        AuditLog(tmp_path).append(record(1))


# --- torn writes -------------------------------------------------------------------------------


def test_torn_last_line_is_reported_then_set_aside_by_the_next_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = write_log(tmp_path, rows=3)
    whole = file_lines(log.path)
    fragment = whole[-1][:57]
    with log.path.open("ab") as handle:
        handle.write(fragment)  # a crash part-way through a fourth row

    broken = log.verify().broken
    assert broken is not None and (broken.source, broken.line) == (CURRENT_NAME, 5)
    assert "incomplete last line" in broken.reason

    with caplog.at_level(logging.WARNING):
        log.append(record(9))
    assert "line 5: an interrupted write (57 bytes" in caplog.text
    result = log.verify()
    assert result.ok and result.rows == 4  # the 3 complete rows kept, the new one linked to them
    assert file_lines(log.path)[:4] == whole
    torn = (tmp_path / TORN_NAME).read_bytes()
    assert b"intervention_log.csv line 5 offset" in torn and fragment in torn


def test_whole_row_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=3)
    log.path.write_bytes(log.path.read_bytes().removesuffix(b"\n"))  # e.g. saved by an editor
    assert "incomplete last line" in str(log.verify().broken)
    log.append(record(9))
    result = log.verify()
    assert result.ok and result.rows == 4
    assert not (tmp_path / TORN_NAME).exists()


def test_torn_header_of_a_new_file_is_rewritten(tmp_path: Path) -> None:
    (tmp_path / CURRENT_NAME).write_bytes(b'"event_id","recorded_a')
    log = AuditLog(tmp_path)
    log.append(record(1))
    assert log.verify().ok
    assert (tmp_path / TORN_NAME).exists()


# --- concurrent writers --------------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from equilibrate.alert.audit import AuditRecord
from equilibrate.alert.audit_log import AuditLog

data_dir, writer, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
log = AuditLog(data_dir)
(data_dir / f"ready-{writer}").touch()
go = data_dir / "go"
while not go.exists():
    time.sleep(0.005)
for n in range(count):
    log.append(AuditRecord(f"C{n % 7}", "sent", actor=writer, message=f"{writer} {n} " + "x" * (n % 300)))
"""


def test_four_processes_appending_at_once_lose_and_interleave_nothing(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"w{i}", "250"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:  # all at the start line
        time.sleep(0.01)
    (tmp_path / "go").touch()
    log = AuditLog(tmp_path)
    while any(proc.poll() is None for proc in writers):  # readers see whole rows only, never a torn tail
        during = log.verify()
        assert during.ok, during.summary()
    for proc in writers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()

    result = log.verify()
    assert result.ok, result.summary()
    assert result.rows == 1000
    assert len(file_lines(log.path)) == 1001  # one physical line per row: nothing interleaved
    seen: dict[str, list[int]] = defaultdict(list)
    actors = [row.record.actor for row in log.rows()]
    assert sum(a != b for a, b in itertools.pairwise(actors)) > 3, "the writers never overlapped"
    for row in log.rows():
        writer, n, _ = row.record.message.split(" ")
        assert row.record.actor == writer
        seen[writer].append(int(n))
    assert seen == {f"w{i}": list(range(250)) for i in range(4)}
    reviewer_check(log.path)


def test_threads_of_one_process_share_the_lock(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)

    def write(writer: str) -> None:
        for n in range(50):
            log.append(record(n, actor=writer))

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = log.verify()
    assert result.ok and result.rows == 200, result.summary()


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_by_month_keeps_the_chain(tmp_path: Path) -> None:
    clock = Clock(JAN)
    log = AuditLog(tmp_path, clock=clock)
    january = [log.append(record(n)) for n in range(3)]
    clock.now = JAN + timedelta(seconds=5)  # 1 February
    february = [log.append(record(n)) for n in range(3, 5)]
    clock.now = JAN - timedelta(days=1)  # a clock stepped back: stays in the current file
    log.append(record(5))
    clock.now = datetime(2026, 3, 1, tzinfo=UTC)
    march = log.append(record(6))

    assert [p.name for p in log.files()] == [
        "intervention_log-2026-01.csv",
        "intervention_log-2026-02.csv",
        CURRENT_NAME,
    ]
    assert february[0].prev_hash == january[-1].row_hash
    result = log.verify()
    assert result.ok and (result.rows, result.files) == (7, 3), result.summary()
    assert result.last_hash == march.row_hash

    (tmp_path / "intervention_log-2026-02.csv").unlink()  # a whole month removed
    broken = log.verify().broken
    assert broken is not None and (broken.source, broken.line) == (CURRENT_NAME, 2)
    assert "chain link broken" in broken.reason


def test_crash_between_rotation_and_first_row_keeps_the_chain(tmp_path: Path) -> None:
    clock = Clock(JAN)
    log = AuditLog(tmp_path, clock=clock)
    last = [log.append(record(n)) for n in range(2)][-1]
    log.path.rename(tmp_path / "intervention_log-2026-01.csv")  # renamed, then the process died
    clock.now = JAN + timedelta(days=1)
    assert log.append(record(3)).prev_hash == last.row_hash
    assert log.verify().ok


# --- export ------------------------------------------------------------------------------------


def _export_fixture(tmp_path: Path) -> AuditLog:
    clock = Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    log = AuditLog(tmp_path / "data", clock=clock)
    for day in range(5):
        clock.now = datetime(2026, 3, 1 + day, 9, 0, tzinfo=UTC)
        log.append_many([record(day, customer="C1"), record(day, customer="C2")])
    return log


def test_export_filters_by_day_and_customer_with_a_verification_summary(tmp_path: Path) -> None:
    log = _export_fixture(tmp_path)
    out = tmp_path / "review" / "c2.csv"
    result = export(log, out, date(2026, 3, 2), date(2026, 3, 4), "C2")
    assert result.rows == 3 and result.source.ok
    exported = list(csv.reader(out.open(newline="", encoding="utf-8")))
    assert exported[0] == list(COLUMNS)
    assert {r[2] for r in exported[1:]} == {"C2"}
    assert [r[1][:10] for r in exported[1:]] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    source_lines = set(file_lines(log.path))
    assert all(line in source_lines for line in file_lines(out)[1:])  # byte-identical, hashes included
    summary = (tmp_path / "review" / "c2.csv.verification.txt").read_text()
    assert "audit export: 3 rows recorded 2026-03-02..2026-03-04 (UTC), customer C2" in summary
    assert "source chain verified: 10 rows in 1 file, chain intact" in summary

    everyone = export(log, tmp_path / "all.csv", date(2026, 3, 1), date(2026, 3, 31))
    assert everyone.rows == 10


def test_export_of_a_tampered_log_says_so(tmp_path: Path) -> None:
    log = _export_fixture(tmp_path)
    replace_line(log.path, 3, file_lines(log.path)[2].replace(b"message 0", b"message X"))
    result = export(log, tmp_path / "out.csv", date(2026, 3, 1), date(2026, 3, 1))
    assert not result.source.ok and result.rows == 2
    assert "source chain NOT verified (10 rows read): broken at intervention_log.csv line 3" in result.lines[1]
    with pytest.raises(AuditError, match="over the log's own files"):
        export(log, log.path, date(2026, 3, 1), date(2026, 3, 1))


# --- the command -------------------------------------------------------------------------------


def test_cli_verify_intact_and_tampered(tmp_path: Path) -> None:
    log = write_log(tmp_path, rows=3)
    ok = run_cli("audit", "verify", "--dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("audit log OK: 3 rows in 1 file, chain intact") and ok.stdout.count("\n") == 1

    event = list(log.rows())[1].event_id
    replace_line(log.path, 3, file_lines(log.path)[2].replace(b"message 1", b"message 7"))
    bad = run_cli("audit", "verify", "--dir", str(tmp_path))
    assert bad.returncode == 1
    assert bad.stdout == (
        f"audit log BROKEN at intervention_log.csv line 3 (event {event}): content changed:"
        " row_hash does not match the row's cells; 1 row(s) before it verified\n"
    )
    assert "Traceback" not in bad.stderr

    missing = run_cli("audit", "verify", "--dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"equilibrate audit: no such directory: {tmp_path / 'nowhere'}"


def test_cli_export(tmp_path: Path) -> None:
    log = _export_fixture(tmp_path)
    out = tmp_path / "c1.csv"
    done = run_cli(
        "audit",
        "export",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-02",
        "--customer",
        "C1",
        "--out",
        str(out),
        "--dir",
        str(log.data_dir),
    )
    assert done.returncode == 0, done.stderr
    assert "audit export: 2 rows recorded 2026-03-01..2026-03-02 (UTC), customer C1" in done.stdout
    assert len(file_lines(out)) == 3
    assert (tmp_path / "c1.csv.verification.txt").exists()
