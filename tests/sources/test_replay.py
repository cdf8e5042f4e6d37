"""`equilibrate replay`: files in, rejects out, events on the real broker, customers in real Redis."""

from __future__ import annotations

import csv
import gzip
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
import yaml

from equilibrate.errors import ConfigError
from equilibrate.kafka.transport import Record, make_consumer
from equilibrate.schema import Transaction, format_ts, parse_transaction
from equilibrate.settings import Settings
from equilibrate.sources.mapping import MappingError, build_mapping, map_rows
from equilibrate.sources.replay import read_source, send
from equilibrate.storage import customer_registry
from tests.conftest import run_cli, settings_env

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "foreign_bank_sample.csv"
SAMPLE_MAPPING = ROOT / "examples" / "mappings" / "foreign_bank.yaml"
SIMPLE = {
    "columns": {"customer_id": "Acct", "ts": "When", "amount": "Amt", "category": "Cat", "balance_after": "Bal"},
    "signed_amount": True,
    "category_default": "other",
}


def consume(settings: Settings, count: int, timeout: float = 25.0) -> list[Record]:
    """Everything on the test's transactions topic (waits for `count`, then a moment for extras)."""
    fast = settings.model_copy(update={"kafka_max_poll_interval_ms": 1000, "kafka_session_timeout_ms": 1000})
    consumer = make_consumer(fast, f"replay-test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([settings.topic_transactions])
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            records += consumer.consume(500, 0.5)
        records += consumer.consume(500, 1.0)
    finally:
        consumer.close()
    return records


def by_customer(records: list[Record]) -> dict[str, list[dict[str, Any]]]:
    """Events per customer in the order the consumer saw them, each checked against the schema."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        assert rec.value is not None
        txn = parse_transaction(rec.value)  # every event passes the consumers' own validation
        model = Transaction.model_validate_json(rec.value)  # and is byte for byte what the model writes
        assert rec.value == orjson.dumps(model.model_dump(mode="json") | {"ts": format_ts(model.ts)})
        assert txn == model.to_txn()
        assert rec.key == txn.customer_id.encode()
        out.setdefault(txn.customer_id, []).append(orjson.loads(rec.value))
    return out


def read_rejects(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_csv_line_numbers_survive_blank_lines_crlf_bom_and_malformed_rows(tmp_path: Path) -> None:
    body = (
        "\ufeffAcct,When,Amt,Cat,Bal\r\n"
        "0001,2024-01-01T10:00:00,-1,GROC,1\r\n"
        "\r\n"
        "0002,2024-01-01T11:00:00,-2,GROC,2,surplus\r\n"
        "0003,2024-01-01T12:00:00\r\n"
        "\r\n"
        "0004,2024-01-01T13:00:00,-4,GROC,4\r\n"
    )
    for name, data in (("plain.csv", body.encode()), ("packed.csv.gz", gzip.compress(body.encode()))):
        path = tmp_path / name
        path.write_bytes(data)
        source = read_source(path, build_mapping(SIMPLE))
        assert source.table.column("Acct").to_pylist() == ["0001", "0004"]  # leading zeros kept
        assert source.lines.tolist() == [2, 7]
        assert [line for line, _ in source.malformed] == [4, 5]
        assert "expected 5 fields, got 6" in source.malformed[0][1]


def test_missing_file_and_missing_column_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_source(tmp_path / "nope.csv", build_mapping(SIMPLE))
    path = tmp_path / "x.csv"
    path.write_text("Acct,Date,Amt,Cat,Bal\n1,2024-01-01,1,GROC,1\n")
    with pytest.raises(MappingError, match="column 'When' \\(mapped to ts\\) is not in the file"):
        read_source(path, build_mapping(SIMPLE))


def test_wrong_encoding_or_delimiter_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("Acct;When;Amt;Cat;Bal;Payee\n0001;2024-01-01T10:00:00;-1;X;2;Müller\n".encode("cp1252"))
    semicolons = {"columns": {"merchant": "Payee"}, "delimiter": ";"}
    with pytest.raises(ConfigError, match="not utf-8\\? set encoding"):
        read_source(path, build_mapping(SIMPLE, semicolons))
    source = read_source(path, build_mapping(SIMPLE, semicolons, {"encoding": "cp1252"}))
    assert source.table.column("Payee").to_pylist() == ["Müller"]
    with pytest.raises(MappingError, match="is the delimiter right"):
        read_source(path, build_mapping(SIMPLE, {"encoding": "cp1252"}))


def test_cli_refuses_a_bad_mapping_in_one_line(tmp_path: Path) -> None:
    args = ("replay", str(SAMPLE), "--mapping", str(SAMPLE_MAPPING), "--dry-run")
    result = run_cli(*args, "--map", "customer_id=AcctNo", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "'AcctNo'" in last
    assert "customer_id" in last
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text(yaml.safe_dump({"columns": {"customer_id": "Konto"}, "date_fromat": "%d"}))
    result = run_cli("replay", str(SAMPLE), "--mapping", str(bad_yaml), cwd=tmp_path)
    assert result.returncode == 2
    assert "date_fromat: unknown key" in result.stderr.strip().splitlines()[-1]
    result = run_cli(*args, "--speed", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "--speed: expected a positive number" in result.stderr


def test_example_dry_run_writes_the_rejects_with_line_numbers(tmp_path: Path) -> None:
    rejects = tmp_path / "out" / "rejects.csv"
    args = ("replay", str(SAMPLE), "--mapping", str(SAMPLE_MAPPING), "--dry-run", "--rejects", str(rejects))
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "44 rows, 0 sent" in result.stdout
    assert "4 rejected" in result.stdout
    rows = read_rejects(rejects)
    assert [(r["source_line"], r["reason"]) for r in rows] == [
        ("7", "bad_date"),
        ("16", "bad_amount"),
        ("22", "zero_amount"),
        ("32", "missing_customer"),
    ]
    assert rows[0]["Buchungsdatum"] == "31.02.2026 10:00"  # the original row, column by column
    assert rows[1]["Betrag"] == "abc"
    with SAMPLE.open(encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for row in rows:  # the line number points at the row in the file
        assert lines[int(row["source_line"]) - 1].split(";")[1] == row["Buchungsdatum"]


def _read_sample_independently() -> list[dict[str, Any]]:
    """What the example mapping should give, worked out with csv, datetime and zoneinfo only."""
    spec = yaml.safe_load(SAMPLE_MAPPING.read_text(encoding="utf-8"))
    zone = ZoneInfo(spec["timezone"])
    out = []
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh, delimiter=";"), start=2):
            try:
                local = datetime.strptime(row["Buchungsdatum"], spec["date_format"])  # noqa: DTZ007
                amount = float(row["Betrag"].replace(".", "").replace(",", "."))
            except ValueError:
                continue
            if not row["Konto"] or amount == 0:
                continue
            out.append(
                {
                    "customer_id": row["Konto"],
                    "ts": format_ts(local.replace(tzinfo=zone).astimezone(UTC)),
                    "amount": abs(amount),
                    "direction": "debit" if amount < 0 else "credit",
                    "category": spec["category_map"].get(row["Kategorie"], spec["category_default"]),
                    "channel": spec["channel_map"].get(row["Zahlungsart"], spec["channel_default"]),
                    "merchant": row["Empfaenger"],
                    "balance_after": float(row["Saldo"].replace(".", "").replace(",", ".")),
                    "currency": spec["currency"],
                    "status": spec["status_map"][row["Buchungsstatus"]],
                    "schema_version": 1,
                    "line": line,
                }
            )
    return sorted(out, key=lambda e: (e["ts"], e["line"]))


def test_example_mapping_agrees_with_an_independent_reading() -> None:
    mapping = build_mapping(yaml.safe_load(SAMPLE_MAPPING.read_text(encoding="utf-8")))
    source = read_source(SAMPLE, mapping)
    events, _ = map_rows(source.table, mapping, source_name=SAMPLE.name, lines=source.lines)
    got = list(events.dicts())
    expected = _read_sample_independently()
    assert len(got) == 40
    assert [{k: v for k, v in e.items() if k != "txn_id"} for e in got] == [
        {k: v for k, v in e.items() if k != "line"} for e in expected
    ]
    assert events.line.tolist() == [e["line"] for e in expected]
    assert len({e["txn_id"] for e in got}) == 40
    assert sum(e["status"] == "failed" for e in got) == 1  # the returned loan direct debit


class RecordingProducer:
    """Notes when each message was handed over (pacing is about time, not about Kafka)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes | None]] = []

    @property
    def failed(self) -> int:
        return 0

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append((time.monotonic(), key))

    def poll(self, timeout: float = 0.0) -> None:
        """Nothing to serve."""

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        """Nothing to close."""


@pytest.mark.parametrize(("speed", "expected_gaps"), [(4.0, [0.0, 0.25, 0.5, 0.5]), (None, [0.0, 0.0, 0.0, 0.0])])
def test_speed_scales_event_time_onto_the_clock(speed: float | None, expected_gaps: list[float]) -> None:
    rows = [{"Acct": f"C{i}", "When": str(ms), "Amt": "-1", "Cat": "x", "Bal": "0"} for i, ms in
            enumerate([1_700_000_002_000, 1_700_000_000_000, 1_700_000_001_000, 1_700_000_002_000])]  # fmt: skip
    mapping = build_mapping(SIMPLE, {"date_format": "epoch_ms"})
    events, _ = map_rows(pa.Table.from_pylist(rows), mapping, source_name="t.csv", lines=np.arange(2, 6))
    producer = RecordingProducer()
    assert send(producer, "t", events, speed) == (4, False)
    start = producer.sent[0][0]
    assert [key for _, key in producer.sent] == [b"C1", b"C2", b"C0", b"C3"]  # event-time order, ties stable
    for (at, _), gap in zip(producer.sent, expected_gaps, strict=True):
        assert gap <= at - start < gap + 0.1


GERMAN_CSV = """Konto;Buchungsdatum;Betrag;Kategorie;Saldo;Verwendungszweck
0001;15.03.2024 09:30;-45,90;LEBM;1.954,10;REWE Markt
0002;14.03.2024 18:00;2.500,00;GEHALT;3.100,00;Arbeitgeber AG
0001;14.03.2024 08:00;2.000,00;GEHALT;2.000,00;Arbeitgeber AG

0001;31.03.2024 12:00;-800,00;MIET;1.154,10;Hausverwaltung
0002;01.04.2024 12:00;abc;LEBM;3.000,00;Aldi
0001;16.03.2024 10:00;-12,00;XYZ;1.942,10;Kiosk
0003;16.03.2024;-1,00;LEBM;1,00;Lidl
0003;17.03.2024 10:00;-5,00;LEBM
;17.03.2024 10:00;-5,00;LEBM;1,00;Lidl
0002;16.03.2024 11:00;0,00;LEBM;3.100,00;Aldi
0002;15.03.2024 07:15;-20,00;LEBM;3.080,00;Aldi
"""


def test_csv_in_a_foreign_layout_replays_through_the_cli(
    both_clients: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = both_clients
    export = tmp_path / "kontoauszug.csv"
    export.write_text(GERMAN_CSV, encoding="utf-8")
    mapping = tmp_path / "bank.yaml"
    columns = {"customer_id": "Konto", "ts": "Buchungsdatum", "amount": "Betrag", "category": "Kategorie"}
    spec: dict[str, Any] = {"columns": columns | {"balance_after": "Saldo"}, "delimiter": ";"}
    spec |= {"date_format": "%d.%m.%Y %H:%M"}
    spec |= {"timezone": "Europe/Berlin", "signed_amount": True, "decimal_comma": True, "currency": "EUR"}
    spec |= {"category_map": {"LEBM": "groceries", "GEHALT": "salary"}, "category_default": "other"}
    mapping.write_text(yaml.safe_dump(spec), encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    result = run_cli(
        "replay", str(export), "--mapping", str(mapping), "--rejects", str(rejects),
        "--map", "merchant=Verwendungszweck", "--category-map", "MIET=rent", "--category-default", "reject",
        env=settings_env(settings), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "11 rows, 5 sent" in result.stdout
    assert "(2 customers)" in result.stdout
    assert "0 failed deliveries" in result.stdout

    events = by_customer(consume(settings, 5))
    assert sorted(events) == ["0001", "0002"]
    assert [(e["ts"], e["amount"], e["direction"], e["category"], e["balance_after"]) for e in events["0001"]] == [
        ("2024-03-14T07:00:00.000Z", 2000.0, "credit", "salary", 2000.0),  # CET: UTC+1
        ("2024-03-15T08:30:00.000Z", 45.9, "debit", "groceries", 1954.1),
        ("2024-03-31T10:00:00.000Z", 800.0, "debit", "rent", 1154.1),  # CEST from 31 March: UTC+2
    ]
    assert [(e["ts"], e["amount"], e["direction"], e["category"], e["balance_after"]) for e in events["0002"]] == [
        ("2024-03-14T17:00:00.000Z", 2500.0, "credit", "salary", 3100.0),
        ("2024-03-15T06:15:00.000Z", 20.0, "debit", "groceries", 3080.0),
    ]
    assert {e["currency"] for v in events.values() for e in v} == {"EUR"}
    assert events["0001"][1]["merchant"] == "REWE Markt"

    assert [(r["source_line"], r["reason"]) for r in read_rejects(rejects)] == [
        ("7", "bad_amount"),
        ("8", "unmapped_category"),  # the command line's --category-default reject beat the YAML's other
        ("9", "bad_date"),
        ("10", "malformed_row"),
        ("11", "missing_customer"),
        ("12", "zero_amount"),
    ]
    assert customer_registry.known(redis_client, ["0001", "0002", "0003"]) == [True, True, False]


def test_parquet_replays_through_the_cli(settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    """An Indian bank's statement layout with typed columns, mapped with flags only."""
    export = tmp_path / "statement.parquet"
    table = pa.table(
        {
            "Account No": pa.array([50100012, 50100034, 50100012, 50100034, 50100012, 50100012], pa.int64()),
            "Txn Date": ["05-04-2024 14:30:00", "05-04-2024 09:00:00", "01-04-2024 10:00:00", None,
                         "06-04-2024 08:00:00", "07-04-2024 08:00:00"],
            "Narration": ["UPI-SWIGGY", "SALARY APR", "NEFT-RENT", "ATM WDL", "BOTH", "POS-DMART"],
            "Chq./Ref.No.": ["R1", "R2", "R3", "R4", "R5", "R6"],
            "Withdrawal Amt.": pa.array([350.0, None, 15000.0, 2000.0, 10.0, 1234.5]),
            "Deposit Amt.": pa.array([None, 85000.0, None, None, 5.0, None]),
            "Closing Balance": pa.array([69650.0, 85000.0, 70000.0, 83000.0, 0.0, 68415.5]),
            "Category": ["FOOD", "SAL", "RENT", "CASH", "FOOD", "GROCERY"],
            "Mode": ["UPI", "NEFT", "NEFT", "ATM", "UPI", "POS"],
        }
    )  # fmt: skip
    pq.write_table(table, export)
    rejects = tmp_path / "rejects.csv"
    maps = ["customer_id=Account No", "ts=Txn Date", "debit_amount=Withdrawal Amt.", "txn_id=Chq./Ref.No."]
    maps += ["credit_amount=Deposit Amt.", "balance_after=Closing Balance", "category=Category", "channel=Mode"]
    maps += ["merchant=Narration"]
    args = [arg for m in maps for arg in ("--map", m)]
    args += ["--category-map", "FOOD=dining", "--category-map", "SAL=salary", "--category-map", "RENT=rent"]
    args += ["--category-map", "CASH=atm_withdrawal", "--category-default", "other", "--channel-map", "UPI=online"]
    args += ["--channel-map", "NEFT=bank_transfer", "--channel-map", "POS=card", "--channel-map", "ATM=atm"]
    args += ["--date-format", "%d-%m-%Y %H:%M:%S", "--timezone", "Asia/Kolkata", "--currency", "INR"]
    args += ["--rejects", str(rejects), "--no-register", "--speed", "max"]
    result = run_cli("replay", str(export), *args, env=settings_env(settings), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "6 rows, 4 sent" in result.stdout

    events = by_customer(consume(settings, 4))
    got = {c: [(e["txn_id"], e["ts"], e["amount"], e["direction"], e["category"], e["channel"]) for e in v]
           for c, v in events.items()}  # fmt: skip
    assert got == {
        "50100012": [
            ("R3", "2024-04-01T04:30:00.000Z", 15000.0, "debit", "rent", "bank_transfer"),  # IST: UTC+5:30
            ("R1", "2024-04-05T09:00:00.000Z", 350.0, "debit", "dining", "online"),
            ("R6", "2024-04-07T02:30:00.000Z", 1234.5, "debit", "other", "card"),
        ],
        "50100034": [("R2", "2024-04-05T03:30:00.000Z", 85000.0, "credit", "salary", "bank_transfer")],
    }
    assert events["50100012"][2]["balance_after"] == 68415.5
    assert {e["currency"] for v in events.values() for e in v} == {"INR"}
    rows = read_rejects(rejects)
    assert [(r["source_line"], r["reason"]) for r in rows] == [("4", "bad_date"), ("5", "bad_amount")]
    assert rows[1]["Narration"] == "BOTH"  # paid in and paid out on one row
    assert customer_registry.count(redis_client) == 0  # --no-register
