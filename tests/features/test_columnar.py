"""The columnar gate decides exactly as IngestGate + to_arrays: same events, columns, rejections, state."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from equilibrate.features import columnar
from equilibrate.features.columnar import ColumnarBatch, ColumnarGate
from equilibrate.features.state import EventArrays, to_arrays
from equilibrate.kafka.transport import Record, TopicPartition
from equilibrate.schema import Category, Direction, Status
from equilibrate.sources.customers import generate_customers
from equilibrate.sources.gate import IngestGate, RecentIds
from equilibrate.sources.simulator import Simulator
from tests.factories import encode, txn, varied_stream
from tests.test_schema import MUTATIONS

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Registry:
    """A known-customer lookup that records what it was asked; ids starting with X are unknown."""

    asked: list[list[str]] = field(default_factory=list)

    def __call__(self, ids: Sequence[str]) -> list[bool]:
        self.asked.append(list(ids))
        return [not cid.startswith("X") for cid in ids]


@dataclass
class Pair:
    """The reference gate and the columnar gate, fed the same batches."""

    validate: bool = True
    capacity: int = 2_000_000
    ref_known: Registry = field(default_factory=Registry)
    col_known: Registry = field(default_factory=Registry)
    ref: IngestGate = field(init=False)
    col: ColumnarGate = field(init=False)
    offset: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.ref = IngestGate(self.ref_known if self.validate else None, RecentIds(self.capacity))
        self.col = ColumnarGate(self.col_known if self.validate else None, RecentIds(self.capacity))

    def records(self, values: Sequence[bytes | None], partitions: int = 3) -> list[Record]:
        out = []
        for v in values:
            i = next(self.offset)
            out.append(Record(f"t{i % 2}" if partitions > 3 else "transactions", i % partitions, i, None, v, 0))
        return out

    def check(self, values: Sequence[bytes | None], partitions: int = 3) -> ColumnarBatch:
        """Both gates on one batch; assert they agree on everything; return the columnar result."""
        records = self.records(values, partitions)
        ref_error = col_error = None
        try:
            accepted, rejected = self.ref.check(records)
        except Exception as exc:  # an event the schema crashes on: both must crash alike
            ref_error = exc
        try:
            got = self.col.check(records)
        except Exception as exc:
            col_error = exc
        if ref_error is not None or col_error is not None:
            assert repr(ref_error) == repr(col_error)
            self.assert_same_state()
            raise ref_error  # type: ignore[misc]
        index: dict[str, int] = {}
        cust = [index.setdefault(a.txn.customer_id, len(index)) for a in accepted]
        expected = to_arrays([a.txn for a in accepted], cust)
        assert [r.offset for r in got.accepted_records] == [a.record.offset for a in accepted]
        assert got.customer_ids == list(index)
        for f in fields(EventArrays):
            want, have = getattr(expected, f.name), getattr(got.events, f.name)
            assert have.dtype == want.dtype and np.array_equal(have, want), f.name
        assert [(r.record.offset, r.reason, r.detail) for r in got.rejected] == [
            (r.record.offset, r.reason, r.detail) for r in rejected
        ]
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            offsets[(rec.topic, rec.partition)] = rec.offset + 1
        watermarks: dict[TopicPartition, int] = {}
        for a, ms in zip(accepted, expected.ms.tolist(), strict=True):
            tp = (a.record.topic, a.record.partition)
            if ms > watermarks.get(tp, -1):
                watermarks[tp] = ms
        assert got.offsets == offsets and got.watermarks == watermarks
        self.assert_same_state()
        return got

    def assert_same_state(self) -> None:
        assert list(self.col.recent._order) == list(self.ref.recent._order)
        assert self.col.recent._ids == self.ref.recent._ids
        assert self.col._known_cache == self.ref._known_cache
        assert self.col_known.asked == self.ref_known.asked


def _simulated(customers: int, days: int) -> list[bytes]:
    sim = Simulator(generate_customers(customers, seed=3), seed=3, start=START)
    return [v for day in sim.days(days) for v in sim.encode(day)]


def test_simulated_events_give_identical_columns() -> None:
    values = _simulated(500, 20)
    pair = Pair()
    for lo in range(0, len(values), 5000):
        got = pair.check(values[lo : lo + 5000])
        assert got.scanned == len(got.events) == min(5000, len(values) - lo)  # all judged by the scan
    assert len(pair.ref.recent) == len(values)


def test_simulated_events_with_repeats_and_strangers() -> None:
    values = _simulated(500, 20)
    pair = Pair()
    for lo in range(5000, len(values), 5000):
        batch = values[lo : lo + 5000]
        repeats = batch[::500] + values[lo - 5000 : lo : 700]  # within the batch, and from the one before
        strangers = [v.replace(b'"customer_id":"C', b'"customer_id":"X', 1) for v in batch[1::900]]
        mixed = batch + repeats + strangers
        random.Random(lo).shuffle(mixed)  # a stranger may come before or after its txn id's first use
        got = pair.check(mixed)
        assert got.scanned == len(mixed) and {r.reason for r in got.rejected} == {
            "duplicate_txn_id",
            "unknown_customer",
        }


def test_varied_stream_with_late_and_very_old_events() -> None:
    values = [encode(e) for e in varied_stream(40, 120, seed=4)]
    pair = Pair(validate=False)
    for lo in range(0, len(values), 997):
        pair.check(values[lo : lo + 997])


def test_every_direction_category_and_status() -> None:
    combos = itertools.product(Direction, Category, Status)
    values = [encode(txn(direction=d.value, category=c.value, status=s.value)) for d, c, s in combos]
    assert Pair().check(values).scanned == len(values)


def _raw(event: dict[str, Any], name: str, text: str) -> bytes:
    """The event's bytes with the value of `name` replaced by raw JSON text."""
    marker = "@@MARK@@"
    return encode({**event, name: marker}).replace(f'"{marker}"'.encode(), text.encode())


def _ts(moment: datetime, digits: int, zone: str) -> str:
    frac = f".{moment.microsecond:06d}"[: digits + 1] if digits else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + frac + zone


#: Wire-level variations beyond the schema tests': each takes a good event and returns bytes or None.
RAW: list[Callable[[dict[str, Any]], bytes | None]] = [
    lambda e: None,
    lambda e: b"",
    lambda e: b"   ",
    lambda e: b"\x00\xffnot json",
    lambda e: b"[1, 2]",
    lambda e: b'"just a string"',
    lambda e: encode(e)[:-1],
    lambda e: encode(e) + b" ",
    lambda e: b" " + encode(e),
    lambda e: encode(e) + b"\n",
    lambda e: encode(e) + b"x",
    lambda e: encode(e) + b"}",
    lambda e: orjson.dumps(e, option=orjson.OPT_INDENT_2),
    lambda e: orjson.dumps(dict(reversed(list(e.items())))),
    lambda e: orjson.dumps(e, option=orjson.OPT_SORT_KEYS),
    lambda e: encode(e).replace(b'"customer_id"', b'"customer_iD"'),
    lambda e: encode(e).replace(b'"merchant"', b'"merchent"'),
    lambda e: encode(e).replace(b'"schema_version":1}', b'"schema_version":1,"amount":3.5}'),
    lambda e: encode(e).replace(b'"txn_id":"', b'"txn_id":"\\u0054'),
    lambda e: encode(e).replace(b'"merchant":"', b'"merchant":"\\t'),
    lambda e: encode(e).replace(b'"merchant":"', b'"merchant":"\t'),
    lambda e: encode(e).replace(b'"merchant":"', b'"merchant":"\xff'),
    lambda e: encode(e).replace(b'"merchant":"', b'"merchant":"\xed\xa0\x80'),
    lambda e: encode(e).replace(b'"merchant":"', b'"merchant":"\x7f'),
    lambda e: encode({**e, "merchant": "Caf\u00e9 Nero"}),
    lambda e: encode({**e, "merchant": "\u00a3 shop"}),
    lambda e: encode({**e, "merchant": "shop\u00a0"}),
    lambda e: encode({**e, "merchant": "\u3000shop"}),
    lambda e: encode({**e, "merchant": "shop\u2003"}),
    lambda e: encode({**e, "merchant": "\u2003"}),
    lambda e: encode({**e, "merchant": "\u20ac"}),
    lambda e: encode({**e, "merchant": ""}),
    lambda e: encode({**e, "merchant": " "}),
    lambda e: encode({**e, "merchant": "m" * 200}),
    lambda e: encode({**e, "merchant": "\u00e9" * 150}),
    lambda e: encode({**e, "merchant": "\u00e9" * 201}),
    lambda e: encode({**e, "txn_id": "T\u00e9-" + e["txn_id"]}),
    lambda e: encode({**e, "txn_id": "x" * 128}),
    lambda e: encode({**e, "txn_id": "x" * 129}),
    lambda e: encode({**e, "txn_id": "\u00e9" * 100}),
    lambda e: encode({**e, "customer_id": "C" * 64}),
    lambda e: encode({**e, "customer_id": " C0000001"}),
    lambda e: encode({**e, "customer_id": "\u00c70000001"}),
    lambda e: encode({**e, "txn_id": e["txn_id"] + "\u00a0"}),
    lambda e: encode({**e, "txn_id": "\u2003" + e["txn_id"]}),
    lambda e: encode({**e, "customer_id": e["customer_id"] + "\u3000"}),
    lambda e: encode({**e, "customer_id": e["customer_id"] + "\u0085"}),
    lambda e: encode({**e, "customer_id": "\u00a0" + e["customer_id"]}),
    lambda e: encode({**e, "currency": "EUR"}),
    lambda e: encode({**e, "currency": "\u00e9X"}),
    lambda e: encode({**e, "currency": "\u20ac\u20ac\u20ac"}),
    lambda e: encode({**e, "currency": " GB"}),
    lambda e: encode({**e, "currency": "GBPX"}),
    lambda e: encode({**e, "direction": ["debit"]}),
    lambda e: encode({**e, "category": {"x": 1}}),
    lambda e: encode({**e, "status": None}),
    lambda e: encode({**e, "channel": "standing_order"}),
    lambda e: encode({**e, "category": "loan_repaymen"}),
    lambda e: encode({**e, "category": "loan_repayments"}),
    lambda e: encode({**e, "category": "Loan_repayment"}),
    lambda e: encode({**e, "schema_version": True}),
    lambda e: _raw(e, "amount", "12.50"),
    lambda e: _raw(e, "amount", "12.500000000"),
    lambda e: _raw(e, "amount", "1.25e1"),
    lambda e: _raw(e, "amount", "1E2"),
    lambda e: _raw(e, "amount", "012.5"),
    lambda e: _raw(e, "amount", "12."),
    lambda e: _raw(e, "amount", ".5"),
    lambda e: _raw(e, "amount", "-0"),
    lambda e: _raw(e, "amount", "0.0"),
    lambda e: _raw(e, "amount", "00"),
    lambda e: _raw(e, "amount", "9999999999.99"),
    lambda e: _raw(e, "amount", "10000000000"),
    lambda e: _raw(e, "amount", "123456789012345"),
    lambda e: _raw(e, "amount", "1234567890123456"),
    lambda e: _raw(e, "amount", "0.1234567890123456789"),
    lambda e: _raw(e, "amount", "1e400"),
    lambda e: _raw(e, "amount", "NaN"),
    lambda e: _raw(e, "amount", "+5"),
    lambda e: _raw(e, "amount", "1-2"),
    lambda e: _raw(e, "amount", "1..2"),
    lambda e: _raw(e, "amount", "2.5"),
    lambda e: _raw(e, "amount", "0.5"),
    lambda e: _raw(e, "amount", "-12.5"),
    lambda e: _raw(e, "balance_after", "-0"),
    lambda e: _raw(e, "balance_after", "-0.005"),
    lambda e: _raw(e, "balance_after", "0.125"),
    lambda e: _raw(e, "balance_after", "-99999999999999.9"),
    lambda e: _raw(e, "balance_after", "18446744073709551615"),
    lambda e: _raw(e, "balance_after", "-"),
    lambda e: _raw(e, "balance_after", '"12"'),
    lambda e: _raw(e, "schema_version", "1.0"),
    lambda e: _raw(e, "schema_version", "01"),
    lambda e: encode({**e, "ts": "2024-02-29T23:59:59.999999Z"}),
    lambda e: encode({**e, "ts": "2000-02-29T12:00:00+14:00"}),
    lambda e: encode({**e, "ts": "2026-03-01T00:30:00+01:00"}),
    lambda e: encode({**e, "ts": "2026-03-01T23:30:00-05:30"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00-00:00"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00+23:59"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00+05:75"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00+05:99"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00 01:00"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00.5_01:00"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00+0100"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00+01:0a"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00.1234567Z"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00.Z"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00z"}),
    lambda e: encode({**e, "ts": "2026-03-01t09:00:00Z"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00Z"}),
    lambda e: encode({**e, "ts": "20260301T090000Z"}),
    lambda e: encode({**e, "ts": "1969-12-31T23:59:59.999Z"}),
    lambda e: encode({**e, "ts": "1900-01-01T00:00:00Z"}),
    lambda e: encode({**e, "ts": "1899-12-31T23:59:59Z"}),
    lambda e: encode({**e, "ts": "2199-12-31T23:59:59.999999Z"}),
    lambda e: encode({**e, "ts": "2200-01-01T00:00:00Z"}),
    lambda e: encode({**e, "ts": "9999-12-31T23:59:59Z"}),
    lambda e: encode({**e, "ts": "9999-12-31T23:59:59.999999Z"}),
    lambda e: encode({**e, "ts": "2262-04-11T23:47:16.854775Z"}),
    lambda e: encode({**e, "ts": "0001-01-01T00:00:00.000001Z"}),
    lambda e: encode({**e, "ts": "1677-09-21T00:12:43.145224Z"}),
    lambda e: encode({**e, "ts": "2026-03-01T09:00:00\u0665Z"}),
]
#: Well-formed timestamp texts in every layout the scan claims, for random times.
ZONES = ["Z", "+00:00", "-00:00", "+01:00", "-07:30", "+13:45", "-23:59"]


def _mutated(event: dict[str, Any], rng: random.Random) -> bytes | None:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(RAW)(event)
    if roll < 0.5:
        mutated = dict(event)
        for name, value in rng.sample(MUTATIONS, rng.randint(1, 3)):
            mutated[name] = value
        for name in rng.sample(sorted(event), 1) if rng.random() < 0.2 else []:
            mutated.pop(name)
        return encode(mutated)
    if roll < 0.65:
        moment = START + timedelta(seconds=rng.uniform(-2e9, 5e9))
        return encode({**event, "ts": _ts(moment, rng.randint(0, 6), rng.choice(ZONES))})
    if roll < 0.8:
        text = f"{rng.uniform(0, 10 ** rng.randint(0, 10)):.{rng.randint(0, 8)}f}"
        return _raw(event, rng.choice(["amount", "balance_after"]), rng.choice(["", "-"]) + text)
    return encode(event)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # to_arrays on a 1.8e19 balance
def test_mutated_events_mixed_into_good_batches() -> None:
    rng = random.Random(11)
    good = [orjson.loads(v) for v in _simulated(200, 10)]
    pair = Pair()
    scanned = 0
    for _ in range(30):
        batch = rng.sample(good, 400)
        values: list[bytes | None] = [_mutated(e, rng) if rng.random() < 0.4 else encode(e) for e in batch]
        for _ in range(rng.randint(0, 20)):  # repeats within the batch, and of earlier batches
            values.append(rng.choice([v for v in values if v is not None] or [b"{}"]))
            values.append(encode(rng.choice(good)))
        for _ in range(rng.randint(0, 10)):  # unknown customers, some sharing txn ids with known ones
            stranger = {**rng.choice(batch), "customer_id": f"X{rng.randint(0, 5)}"}
            if rng.random() < 0.5:
                stranger["txn_id"] = f"fresh-{rng.randint(0, 10**9)}"
            values.insert(rng.randrange(len(values) + 1), encode(stranger))
        rng.shuffle(values)
        scanned += pair.check(values, partitions=rng.choice([1, 3, 8])).scanned
    assert scanned > 30 * 200  # most events took the columnar path


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_every_raw_variation_alone_and_padded_ids_that_duplicate_plain_ones() -> None:
    pair = Pair()
    base = txn(txn_id="T-pad")
    for make in RAW:
        pair.check([make(txn()), encode(txn())])
    # The model strips " T-pad " to "T-pad": a later plain T-pad is its duplicate, in either order.
    pair.check([encode({**base, "txn_id": " T-pad "}), encode(base), encode({**base, "txn_id": "T-pad "})])
    nbsp = txn(txn_id="T-nbsp")
    pair.check([encode(nbsp), encode({**nbsp, "txn_id": "T-nbsp\u00a0"}), encode({**nbsp, "txn_id": "\u3000T-nbsp"})])


def test_scanned_numbers_are_correctly_rounded() -> None:
    """Plain decimals read by the scan equal Python's (and orjson's) correctly rounded parse, bit for bit;
    longer ones (more than 15 digits, where digits / 10**k could round twice) are left to orjson."""
    rng = random.Random(2)
    texts = ["0", "-0", "0.1", "0.3", "2.675", "1.005", "9007199254740993", "0.1234567890123456789"]
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        point = rng.randint(0, len(digits))
        whole, frac = digits[:point].lstrip("0") or "0", digits[point:]
        texts.append(rng.choice(["", "-"]) + whole + (f".{frac}" if frac else ""))
    joined = b"".join(t.encode() + b"," for t in texts)
    padded = joined + bytes(40)
    words = np.ndarray((len(joined) + 33,), dtype="<u8", buffer=padded, strides=(1,))
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    starts = np.cumsum(lengths + 1) - lengths - 1
    value, ok = columnar._number(words, starts, lengths)
    for text, v, good in zip(texts, value.tolist(), ok.tolist(), strict=True):
        assert good == (len(text.lstrip("-").replace(".", "")) <= 15), text
        if good:
            assert v == float(text) == orjson.loads(text) and np.signbit(v) == text.startswith("-"), text
    assert ok.sum() > len(texts) // 2


def test_duplicates_when_the_recent_window_overflows_mid_batch() -> None:
    pair = Pair(capacity=7)
    ids = [f"T{i}" for i in range(12)]
    for _ in range(3):
        pair.check([encode(txn(txn_id=t)) for t in ids + ids[:3] + ids[5:9]])
    for lo in (0, 0, 5, 3):  # no repeats within a batch, but more new ids than the window holds
        pair.check([encode(txn(txn_id=t)) for t in ids[lo : lo + 9]])
    fresh = [encode(txn()) for _ in range(9)]
    pair.check(fresh)
    pair.check(fresh[:4])  # the window forgot the first two of them


def test_customers_left_without_events_drop_out_of_the_batch() -> None:
    pair = Pair()
    seen = encode(txn("C0000002"))
    pair.check([seen])
    got = pair.check([encode(txn("X1")), seen, encode(txn("C0000003")), encode(txn("X2")), encode(txn("C0000004"))])
    assert got.customer_ids == ["C0000003", "C0000004"] and got.events.cust.tolist() == [0, 1]


def test_impossible_dates_are_rejected_the_same_way_by_both_gates() -> None:
    pair = Pair()
    pair.check([encode(txn(txn_id="before"))])
    impossible = ["2026-02-29T09:00:00Z", "2026-13-01T09:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T09:00:60Z"]
    impossible += ["2026-03-01T09:00:00+24:00", "2026-03-01T09:00:00-23:60"]
    odd = ["\u0662026-03-01T09:00:00Z", "0001-01-01T00:30:00+01:00"]  # an Arabic-Indic digit (\d); year 0 in UTC
    for ts in impossible + odd:
        got = pair.check([encode(txn()), encode(txn(ts=ts))])
        assert len(got.accepted) == 1
        assert [r.reason for r in got.rejected] == ["bad_timestamp"], ts


def test_empty_batches_and_batches_without_values() -> None:
    pair = Pair()
    assert len(pair.check([]).events) == 0
    got = pair.check([None, None, b"", b"{}"])
    assert not got.rejected[0].record.value and got.customer_ids == [] and got.watermarks == {}


def test_partitions_topics_and_watermarks_before_1970() -> None:
    pair = Pair()
    early = encode(txn(ts="1969-12-31T23:59:59.999Z"))
    values = [encode(txn()) for _ in range(20)] + [early, encode(txn(ts="1970-01-01T00:00:00.000Z"))]
    got = pair.check(values, partitions=5)
    assert len(got.offsets) > 1 and got.events.ms.min() == -1
