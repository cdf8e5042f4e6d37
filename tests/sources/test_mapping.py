"""The mapping from a bank's own export layout onto our events: pure, no services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest

from equilibrate.errors import EquilibrateError
from equilibrate.schema import Transaction, format_ts, parse_transaction
from equilibrate.sources.mapping import (
    REASONS,
    Events,
    MappingError,
    Rejects,
    build_mapping,
    check_columns,
    map_rows,
    parse_pairs,
)

COLUMNS = {"customer_id": "Acct", "ts": "When", "amount": "Amt", "category": "Cat", "balance_after": "Bal"}
SIGNED = {
    "columns": COLUMNS,
    "date_format": "%d/%m/%Y %H:%M",
    "signed_amount": True,
    "category_map": {"GROC": "groceries"},
}
GOOD = {"Acct": "A1", "When": "31/01/2024 10:15", "Amt": "-12.50", "Cat": "GROC", "Bal": "100.00"}

#: Every optional column mapped, so that every reason can happen.
FULL_COLUMNS = COLUMNS | {"direction": "Dir", "channel": "Chan", "status": "State", "currency": "Cur", "txn_id": "Ref"}
FULL = {
    "columns": FULL_COLUMNS,
    "date_format": "%d/%m/%Y %H:%M",
    "category_map": {"GROC": "groceries"},
    "channel_map": {"POS": "card"},
    "channel_default": "reject",
    "status_map": {"BOOKED": "ok"},
}
FULL_GOOD = GOOD | {"Amt": "12.50", "Dir": "DR", "Chan": "POS", "State": "BOOKED", "Cur": "eur", "Ref": "T1"}


def mapped(rows: list[dict[str, Any]], *layers: dict[str, Any], name: str = "export.csv") -> tuple[Events, Rejects]:
    table = pa.Table.from_pylist(rows)
    lines = np.arange(2, len(rows) + 2, dtype=np.int64)
    return map_rows(table, build_mapping(*layers), source_name=name, lines=lines)


def events(rows: list[dict[str, Any]], *layers: dict[str, Any]) -> list[dict[str, Any]]:
    ev, rejects = mapped(rows, *layers)
    assert rejects.reason == [], list(zip(rejects.reason, rejects.detail, strict=True))
    return list(ev.dicts())


@pytest.mark.parametrize(
    ("change", "reason", "column"),
    [
        ({"Acct": "  "}, "missing_customer", "Acct"),
        ({"Acct": "x" * 65}, "bad_customer_id", "Acct"),
        ({"When": "31/02/2024 10:00"}, "bad_date", "When"),
        ({"When": "yesterday"}, "bad_date", "When"),
        ({"When": ""}, "bad_date", "When"),
        ({"Amt": "12.5O"}, "bad_amount", "Amt"),
        ({"Amt": ""}, "bad_amount", "Amt"),
        ({"Amt": "12,50"}, "bad_amount", "Amt"),  # a decimal comma, but decimal_comma is off
        ({"Amt": "0.00"}, "zero_amount", "Amt"),
        ({"Dir": "XX"}, "unknown_direction", "Dir"),
        ({"Cat": "NOPE"}, "unmapped_category", "Cat"),
        ({"Bal": "n/a"}, "bad_balance", "Bal"),
        ({"Chan": "TELEX"}, "unknown_channel", "Chan"),
        ({"State": "PENDING"}, "unknown_status", "State"),
        ({"Cur": "EURO"}, "bad_currency", "Cur"),
        ({"Ref": "x" * 129}, "bad_txn_id", "Ref"),
    ],
)
def test_each_rejection_reason_names_its_line_and_value(change: dict[str, str], reason: str, column: str) -> None:
    rows = [FULL_GOOD | {"Ref": "T1"}, FULL_GOOD | {"Ref": "T2"} | change, FULL_GOOD | {"Ref": "T3"}]
    ev, rejects = mapped(rows, FULL)
    assert rejects.reason == [reason]
    assert rejects.line.tolist() == [3]  # header = line 1, so the second data row is line 3
    assert rejects.row.tolist() == [1]
    assert rejects.detail[0].startswith(f"{column}={change[column]!r}")
    assert rejects.counts == {reason: 1}
    assert ev.line.tolist() == [2, 4]
    assert ev.columns[0] == ["T1", "T3"]


def test_every_reason_is_tested() -> None:
    tested = {"missing_customer", "bad_customer_id", "bad_date", "bad_amount", "zero_amount", "unknown_direction"}
    tested |= {"unmapped_category", "bad_balance", "unknown_channel", "unknown_status", "bad_currency", "bad_txn_id"}
    assert tested == set(REASONS)


def test_a_row_is_rejected_for_the_first_problem_only() -> None:
    _, rejects = mapped([FULL_GOOD | {"When": "nope", "Amt": "nope", "Cat": "NOPE"}], FULL)
    assert rejects.reason == ["bad_date"]


def test_the_full_row_maps_every_field() -> None:
    [event] = events([FULL_GOOD | {"Chan": "pos", "State": "booked"}], FULL)
    assert event == {
        "txn_id": "T1",
        "customer_id": "A1",
        "ts": "2024-01-31T10:15:00.000Z",
        "amount": 12.5,
        "direction": "debit",
        "category": "groceries",
        "channel": "card",
        "merchant": "",
        "balance_after": 100.0,
        "currency": "EUR",
        "status": "ok",
        "schema_version": 1,
    }


def test_signed_amounts_give_the_direction() -> None:
    amounts = ["-12.50", "+3", "7", "(7.25)", "12.50-", "-0.01"]
    got = [(e["amount"], e["direction"]) for e in events([GOOD | {"Amt": a} for a in amounts], SIGNED)]
    expected = [(12.5, "debit"), (3.0, "credit"), (7.0, "credit"), (7.25, "debit"), (12.5, "debit"), (0.01, "debit")]
    assert got == expected


def test_decimal_comma_and_thousands_separators() -> None:
    amounts = {"1.234,56": 1234.56, "-0,99": -0.99, "1 234,5": 1234.5, "€ 2.000.000,00": 2e6, "7": 7.0}
    rows = [GOOD | {"Amt": a, "Bal": "-1.000,25"} for a in amounts]
    got = events(rows, SIGNED, {"decimal_comma": True})
    assert [e["amount"] if e["direction"] == "credit" else -e["amount"] for e in got] == list(amounts.values())
    assert {e["balance_after"] for e in got} == {-1000.25}
    # with decimal_comma a point can only group thousands: 12.5 is ambiguous and refused
    rows = [GOOD | {"Amt": "12.5", "Bal": "1,00"}, GOOD | {"Amt": "1.234", "Bal": "1,00"}]
    _, rejects = mapped(rows, SIGNED, {"decimal_comma": True})
    assert rejects.reason == ["bad_amount"]
    assert rejects.line.tolist() == [2]


def test_point_decimals_with_comma_thousands_and_currency_signs() -> None:
    got = events([GOOD | {"Amt": a} for a in ("£1,234.50", "-1,000,000.01", "₹ 12,345.5")], SIGNED)
    assert [e["amount"] for e in got] == [1234.5, 1000000.01, 12345.5]


@pytest.mark.parametrize(
    ("date_format", "value", "expected"),
    [
        ("%d/%m/%Y %H:%M", "31/01/2024 10:15", "2024-01-31T10:15:00.000Z"),
        ("%d/%m/%Y %H:%M", "1/2/2024 9:05", "2024-02-01T09:05:00.000Z"),  # not zero-padded
        ("%d.%m.%Y", "29.02.2024", "2024-02-29T00:00:00.000Z"),
        ("%Y-%m-%d %H:%M:%S", "2024-03-01 00:00:01", "2024-03-01T00:00:01.000Z"),
        ("%d-%b-%Y %H:%M", "03-Jan-2024 23:59", "2024-01-03T23:59:00.000Z"),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-01-31T10:15:00+0100", "2024-01-31T09:15:00.000Z"),
        ("iso", "2024-01-31T10:15:00Z", "2024-01-31T10:15:00.000Z"),
        ("iso", "2024-01-31T10:15:00+05:30", "2024-01-31T04:45:00.000Z"),
        ("iso", "2024-01-31 10:15:00.123456", "2024-01-31T10:15:00.123Z"),
        ("iso", "2024-01-31T10:15", "2024-01-31T10:15:00.000Z"),
        ("iso", "2024-01-31", "2024-01-31T00:00:00.000Z"),
        ("epoch_s", "1706696100", "2024-01-31T10:15:00.000Z"),
        ("epoch_s", "1706696100.25", "2024-01-31T10:15:00.250Z"),
        ("epoch_ms", "1706696100123", "2024-01-31T10:15:00.123Z"),
    ],
)
def test_date_formats(date_format: str, value: str, expected: str) -> None:
    [event] = events([GOOD | {"When": value}], SIGNED, {"date_format": date_format})
    assert event["ts"] == expected


@pytest.mark.parametrize(
    ("date_format", "good", "bad"),
    [
        ("%d.%m.%Y", "29.02.2024", "29.02.2023"),  # not a leap year
        ("%d/%m/%Y %H:%M", "30/04/2024 10:00", "31/04/2024 10:00"),
        ("%d/%m/%Y %H:%M:%S", "31/01/2024 10:00:59", "31/01/2024 10:00:60"),  # pyarrow would roll it over
        ("%d/%m/%Y %H:%M", "31/01/2024 10:00", "2024-01-31 10:00"),
        ("iso", "2024-02-29", "2024-02-30"),
        ("iso", "2024-01-31", "31/01/2024"),
        ("epoch_s", "1706696100", "soon"),
        ("epoch_ms", "1706696100000", "99999999999999999999"),  # far beyond 2100
        ("%d/%m/%Y", "01/01/1901", "01/01/1850"),  # before 1900: a typo, not a transaction
    ],
)
def test_impossible_dates_are_rejected(date_format: str, good: str, bad: str) -> None:
    rows = [GOOD | {"When": good}, GOOD | {"When": bad}]
    ev, rejects = mapped(rows, SIGNED, {"date_format": date_format, "timezone": "UTC"})
    assert rejects.reason == ["bad_date"]
    assert rejects.line.tolist() == [3]
    assert len(ev) == 1


@pytest.mark.parametrize(
    ("zone", "value", "expected"),
    [
        ("Europe/London", "15/01/2024 12:00", "2024-01-15T12:00:00.000Z"),  # GMT
        ("Europe/London", "15/07/2024 12:00", "2024-07-15T11:00:00.000Z"),  # BST
        ("Europe/London", "27/10/2024 01:30", "2024-10-27T00:30:00.000Z"),  # repeated hour: the earlier
        ("Europe/London", "31/03/2024 01:30", "2024-03-31T01:00:00.000Z"),  # skipped hour: its end
        ("Asia/Kolkata", "15/01/2024 12:00", "2024-01-15T06:30:00.000Z"),
        ("America/New_York", "31/12/2023 22:00", "2024-01-01T03:00:00.000Z"),
    ],
)
def test_naive_times_are_converted_from_the_timezone(zone: str, value: str, expected: str) -> None:
    [event] = events([GOOD | {"When": value}], SIGNED, {"timezone": zone})
    assert event["ts"] == expected


def test_times_with_an_offset_ignore_the_timezone() -> None:
    [event] = events(
        [GOOD | {"When": "2024-07-15T12:00:00Z"}], SIGNED, {"date_format": "iso", "timezone": "Asia/Tokyo"}
    )
    assert event["ts"] == "2024-07-15T12:00:00.000Z"


def test_category_value_map_is_case_insensitive_with_a_default() -> None:
    codes = ["GROC", "groc", " Groc ", "Rent", "XYZ"]
    mapping = {"category_map": {"groc": "groceries"}, "category_default": "other"}
    got = [e["category"] for e in events([GOOD | {"Cat": c} for c in codes], SIGNED, mapping)]
    assert got == ["groceries", "groceries", "groceries", "rent", "other"]  # our own names map to themselves


def test_unmapped_category_without_default_is_rejected() -> None:
    ev, rejects = mapped([GOOD | {"Cat": "XYZ"}, GOOD], SIGNED, {"category_default": "reject"})
    assert rejects.reason == ["unmapped_category"]
    assert rejects.line.tolist() == [2]
    assert "XYZ" in rejects.detail[0]
    assert len(ev) == 1


def test_direction_channel_and_status_maps() -> None:
    layer = {"columns": COLUMNS | {"direction": "SH", "channel": "Art", "status": "St"}, "signed_amount": False}
    maps = {"direction_map": {"S": "debit", "H": "credit"}, "channel_map": {"LS": "direct_debit"}}
    maps |= {"status_map": {"RUECK": "failed", "GEBUCHT": "ok"}}
    rows = [GOOD | {"Amt": "5", "SH": sh, "Art": art, "St": st} for sh, art, st in
            [("S", "LS", "RUECK"), ("H", "?", "gebucht"), ("cr", "atm", "ok"), ("DR", "LS", "failed")]]  # fmt: skip
    got = [(e["direction"], e["channel"], e["status"]) for e in events(rows, SIGNED, layer, maps)]
    assert got == [
        ("debit", "direct_debit", "failed"),
        ("credit", "other", "ok"),
        ("credit", "atm", "ok"),
        ("debit", "direct_debit", "failed"),
    ]


def test_paid_out_and_paid_in_columns() -> None:
    cols = {k: v for k, v in COLUMNS.items() if k != "amount"} | {"debit_amount": "Out", "credit_amount": "In"}
    layer = {"columns": cols, "signed_amount": False}
    rows = [GOOD | {"Out": o, "In": i} for o, i in [("12.50", ""), ("", "1,000.00"), ("3", "0.00"), ("", "")]]
    rows.append(GOOD | {"Out": "1", "In": "2"})
    ev, rejects = mapped(rows, {**SIGNED, "columns": cols}, layer)
    assert [(e["amount"], e["direction"]) for e in ev.dicts()] == [(12.5, "debit"), (1000.0, "credit"), (3.0, "debit")]
    assert rejects.reason == ["zero_amount", "bad_amount"]
    assert rejects.line.tolist() == [5, 6]
    assert rejects.detail[1].startswith("Out='1', In='2'")


def test_constant_currency_and_merchant_trimmed_to_the_schema_limit() -> None:
    layer = {"columns": COLUMNS | {"merchant": "Payee"}, "currency": "inr"}
    [event] = events([GOOD | {"Payee": "  " + "M" * 199 + "   tail"}], SIGNED, layer)
    assert event["currency"] == "INR"
    assert event["merchant"] == "M" * 199  # cut at 200 characters, then trailing space removed


def test_events_are_in_event_time_order_and_stable_for_ties() -> None:
    whens = ["02/01/2024 10:00", "01/01/2024 10:00", "02/01/2024 10:00", "01/01/2024 09:00", "02/01/2024 10:00"]
    rows = [GOOD | {"When": w, "Amt": str(i + 1)} for i, w in enumerate(whens)]
    ev, _ = mapped(rows, SIGNED)
    assert ev.line.tolist() == [5, 3, 2, 4, 6]
    assert [e["amount"] for e in ev.dicts()] == [4.0, 2.0, 1.0, 3.0, 5.0]
    assert ev.ts_us.tolist() == sorted(ev.ts_us.tolist())


def test_generated_txn_ids_are_deterministic() -> None:
    rows = [GOOD, GOOD, GOOD | {"Amt": "-1"}]
    first, _ = mapped(rows, SIGNED)
    again, _ = mapped(rows, SIGNED)
    other_file, _ = mapped(rows, SIGNED, name="other.csv")
    ids = first.columns[0]
    assert ids == again.columns[0]
    assert len(set(ids)) == 3  # identical rows on different lines differ
    assert all(i.startswith("rp-") and len(i) == 35 for i in ids)
    assert set(ids).isdisjoint(other_file.columns[0])
    shifted, _ = mapped([GOOD | {"Amt": "-1"}], SIGNED)  # same content, another line
    assert shifted.columns[0][0] != ids[2]


def test_txn_id_column_is_used_and_blank_ids_are_generated() -> None:
    layer = {"columns": COLUMNS | {"txn_id": "Ref"}}
    ev, _ = mapped([GOOD | {"Ref": " T-1 "}, GOOD | {"Ref": ""}], SIGNED, layer)
    assert ev.columns[0][0] == "T-1"
    assert ev.columns[0][1].startswith("rp-")


def test_typed_columns_from_parquet() -> None:
    table = pa.table(
        {
            "Acct": pa.array([1001, 1002, None], pa.int64()),
            "When": pa.array(np.array(["2024-07-01T12:00", "2024-07-01T13:00", "NaT"], dtype="datetime64[us]")),
            "Amt": pa.array([-12.5, 0.0, 3.0]),
            "Cat": ["GROC", "GROC", "GROC"],
            "Bal": pa.array([Decimal("100.00"), Decimal("50.00"), Decimal("10.50")], pa.decimal128(10, 2)),
        }
    )
    mapping = build_mapping(SIGNED, {"timezone": "Europe/London"})
    ev, rejects = map_rows(table, mapping, source_name="x.parquet", lines=np.arange(1, 4, dtype=np.int64))
    [event] = ev.dicts()
    assert (event["customer_id"], event["ts"], event["amount"], event["balance_after"]) == (
        "1001",
        "2024-07-01T11:00:00.000Z",
        12.5,
        100.0,
    )
    assert list(zip(rejects.line.tolist(), rejects.reason, strict=True)) == [
        (2, "zero_amount"),
        (3, "missing_customer"),
    ]


def test_encoded_events_are_exactly_what_the_schema_writes() -> None:
    layer = {"columns": COLUMNS | {"merchant": "Payee"}, "timezone": "Europe/Berlin"}
    rows = [GOOD | {"Payee": 'Café "Zürich"\n', "Amt": a} for a in ("-0.1", "1e-3", "123456789.99", "-33.333")]
    ev, rejects = mapped(rows, SIGNED, layer)
    assert rejects.reason == ["bad_amount"]  # 1e-3: exponents are not how banks write money
    for key, value in ev.encoded():
        txn = parse_transaction(value)  # what every consumer runs
        model = Transaction.model_validate_json(value)
        assert value == orjson.dumps(model.model_dump(mode="json") | {"ts": format_ts(model.ts)})
        assert txn == model.to_txn()
        assert key == txn.customer_id.encode()


def test_cli_layer_overrides_yaml_and_merges_maps() -> None:
    yaml_layer = {**SIGNED, "category_map": {"GROC": "groceries", "RST": "dining"}, "currency": "EUR"}
    cli_layer = {"columns": {"ts": "Booked"}, "category_map": {"RST": "travel"}, "currency": "USD"}
    mapping = build_mapping(yaml_layer, cli_layer)
    assert mapping.columns == COLUMNS | {"ts": "Booked"}
    assert mapping.category_map == {"groc": "groceries", "rst": "travel"}
    assert mapping.currency == "USD"


@pytest.mark.parametrize(
    ("layer", "needles"),
    [
        ({"dat_format": "%d"}, ["dat_format", "unknown key"]),
        ({"columns": {"custmer_id": "Acct"}}, ["custmer_id", "customer_id"]),
        ({"columns": {"customer_id": None}}, ["columns.customer_id"]),
        ({"category_map": {"GROC": "grocery"}}, ["category_map", "grocery"]),
        ({"category_default": "misc"}, ["category_default", "misc"]),
        ({"direction_map": {"S": "out"}}, ["direction_map", "out"]),
        ({"timezone": "Mars/Olympus"}, ["timezone", "Mars/Olympus"]),
        ({"date_format": "dd/mm/yyyy"}, ["date_format", "dd/mm/yyyy"]),
        ({"delimiter": ";;"}, ["delimiter"]),
        ({"currency": "EURO"}, ["currency", "EURO"]),
        ({"format": "xlsx"}, ["format", "xlsx"]),
        ({"signed_amount": "perhaps"}, ["signed_amount"]),
        ({"columns": COLUMNS | {"direction": "D"}}, ["direction", "signed_amount"]),
        ({"signed_amount": False}, ["direction", "signed_amount"]),
        ({"columns": {"customer_id": "Acct"}, "__replace__": True}, ["ts"]),
        ({"columns": COLUMNS | {"debit_amount": "Out"}}, ["debit_amount", "credit_amount"]),
    ],
)
def test_bad_mappings_are_refused_in_one_line_naming_the_problem(layer: dict[str, Any], needles: list[str]) -> None:
    base = {"columns": {}} if layer.pop("__replace__", False) else SIGNED
    with pytest.raises(MappingError) as info:
        build_mapping(base, layer)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, EquilibrateError)
    for needle in needles:
        assert needle in message, (needle, message)


def test_missing_column_in_the_file_is_named() -> None:
    with pytest.raises(MappingError) as info:
        check_columns(build_mapping(SIGNED), ["Acct", "Datum", "Amt", "Cat", "Bal"])
    assert "'When'" in str(info.value)
    assert "ts" in str(info.value)
    assert "'Datum'" in str(info.value)  # lists what the file does have


def test_key_value_flags() -> None:
    assert parse_pairs(["customer_id=Acct No", " ts = When "], "--map") == {"customer_id": "Acct No", "ts": "When"}
    with pytest.raises(MappingError, match="--map expects KEY=VALUE, got 'customer_id'"):
        parse_pairs(["customer_id"], "--map")
