"""The feature engine's ingest gate: a whole batch decided at once, accepted events as numpy columns.

Why: at 50,000 events/s on two cores the engine has ~20 us per event for everything, and the per-event
gate (an orjson dict, a Txn and an Accepted tuple per event, then `to_arrays` reading them back) took
half of it. Every producer here (simulator, replay, `Transaction.to_json`) writes one canonical
layout: orjson's compact output, the model's fields in model order. Values in exactly that layout are
judged together with numpy: all quotes found in one pass, the fixed key text between them compared
eight bytes at a time, numbers and timestamps computed from their digits, enum values matched as byte
patterns. The only per-event Python object made is the txn_id string the duplicate check needs.

Anything else (another key order, whitespace, escapes, exponents, non-ASCII string edges, values out
of the plain ranges) goes through `parse_transaction` as in `IngestGate`, so the model decides and
names the reason. The scan accepts a subset of what `schema._fast` accepts, with the numbers
`to_arrays` computes, bit for bit; known customers and duplicates follow `IngestGate.check` step for
step. tests/features/test_columnar.py holds the two gates equal.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from equilibrate.errors import InvalidEventError
from equilibrate.features.state import EventArrays, event_columns, to_arrays
from equilibrate.kafka.transport import Record, TopicPartition
from equilibrate.schema import MAX_BALANCE, Category, Channel, Direction, Status, parse_transaction
from equilibrate.sources.gate import KnownLookup, RecentIds, Rejected

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
PerPartition = dict[TopicPartition, int]

#: The canonical layout: each field and whether its value is a string (else a number).
_LAYOUT = (
    ("txn_id", True), ("customer_id", True), ("ts", True), ("amount", False), ("direction", True),
    ("category", True), ("channel", True), ("merchant", True), ("balance_after", False), ("currency", True),
    ("status", True),
)  # fmt: skip
_TAIL = b',"schema_version":1}'
_ENUMS = (("direction", Direction), ("category", Category), ("channel", Channel), ("status", Status))
_QUOTE, _SPACE = 34, 32


@dataclass(frozen=True, slots=True)
class _Template:
    pieces: tuple[bytes, ...]  # the fixed text before each field, then the tail
    quote_at: tuple[int, ...]  # index among a value's quotes of each piece's first one; last: how many
    words: tuple[tuple[tuple[int, np.uint64], ...], ...]  # per piece, 8-byte words covering it: (offset, <u8)
    enums: dict[str, list[tuple[int, int, int]]]  # per enum value: first word, last word, length
    columns: tuple[I64, Mask, Mask]  # kind, gambling, failed by [direction, category, status] code


def _word(data: bytes) -> int:
    return int.from_bytes(data[:8].ljust(8, b"\0"), "little")


@functools.cache
def _template() -> _Template:
    """Built on first use: the pieces, each enum value's bytes in place, and `to_arrays`'s own columns
    for every (direction, category, status), so kinds cannot drift from `state._kind`."""
    pieces, closing = [], b""
    for i, (name, is_str) in enumerate(_LAYOUT):
        pieces.append(closing + (b"," if i else b"{") + b'"' + name.encode() + b'":' + (b'"' if is_str else b""))
        closing = b'"' if is_str else b""
    pieces.append(closing + _TAIL)
    quote_at = tuple(int(q) for q in np.cumsum([0] + [p.count(b'"') for p in pieces]))
    cover = [(p, sorted({*range(0, len(p) - 7, 8), len(p) - 8})) for p in pieces]
    words = tuple(tuple((o, np.uint64(_word(p[o:]))) for o in offsets) for p, offsets in cover)
    enums = {}
    for name, enum in _ENUMS:  # a short value is read on into the piece after it; a long one never matches
        after = pieces[[f for f, _ in _LAYOUT].index(name) + 1]
        raw = [v.value.encode() for v in enum]
        enums[name] = [(_word(v + after), _word(v[-8:]) * (len(v) > 8), len(v) if len(v) <= 16 else -1) for v in raw]
    return _Template(tuple(pieces), quote_at, words, enums, event_columns())


@dataclass(slots=True)
class ColumnarBatch:
    """One consumed batch as the gate left it.

    `events` row i is `records[accepted[i]]` (arrival order); `events.cust` indexes `customer_ids`
    (first appearance order). `rejected` is in IngestGate's order: unreadable records in record
    order, then unknown customers, then duplicates.
    """

    records: Sequence[Record]
    customer_ids: list[str]
    events: EventArrays
    accepted: I64
    rejected: list[Rejected]
    offsets: PerPartition  # next offset to read per partition (every record counts)
    watermarks: PerPartition  # newest accepted event time (ms) per partition, when > -1
    scanned: int  # events the columnar scan judged; the others went through parse_transaction

    @property
    def accepted_records(self) -> list[Record]:
        return [self.records[i] for i in self.accepted.tolist()]


@dataclass(slots=True)
class _Parsed:
    """Parsed events in record order: positions, columns (`cust` indexes `names`) and txn ids."""

    rows: I64
    events: EventArrays
    names: list[str]
    txn_ids: list[str]
    tidy: bool = True  # codes number the names by first appearance, each in use

    def keep(self, mask: Mask) -> None:
        self.rows, self.events, self.tidy = self.rows[mask], _select(self.events, mask), False
        self.txn_ids = [t for t, k in zip(self.txn_ids, mask.tolist(), strict=True) if k]

    def customer_ids(self) -> list[str]:
        """The names in use, by first appearance (renumbering `events.cust` if rows came or went)."""
        if self.tidy:
            return self.names
        uniq, first, inverse = np.unique(self.events.cust, return_index=True, return_inverse=True)
        by_first = np.argsort(first)
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[by_first] = np.arange(len(uniq))
        self.events.cust = rank[inverse]
        return [self.names[c] for c in uniq[by_first].tolist()]


class ColumnarGate:
    """`IngestGate.check` then `to_arrays`, per batch: the same decisions, reasons, details and order.

    Reasons: empty_message, not_json, not_an_object, the schema's codes, unknown_customer,
    duplicate_txn_id. The known-customer lookup, its positive cache and `recent` behave as there.
    """

    def __init__(self, known: KnownLookup | None, recent: RecentIds | None = None) -> None:
        self.known = known
        self.recent = recent if recent is not None else RecentIds()
        self._known_cache: set[str] = set()  # customers leave the registry only by a deliberate purge

    def check(self, records: Sequence[Record]) -> ColumnarBatch:
        n = len(records)
        values: list[bytes | None] = list(map(attrgetter("value"), records))
        have: list[bytes] = values  # type: ignore[assignment]  # until len(None) says otherwise
        present = np.arange(n)
        try:
            lengths = np.fromiter(map(len, have), dtype=np.int64, count=n)
        except TypeError:  # some records have no value
            present = np.flatnonzero([v is not None for v in values])
            have = [values[i] for i in present.tolist()]  # type: ignore[misc]
            lengths = np.fromiter(map(len, have), dtype=np.int64, count=len(have))
        parsed = _scan(have, lengths)
        parsed.rows = present[parsed.rows]
        scanned, rejected = len(parsed.rows), list[Rejected]()
        if scanned < n:
            self._parse_rest(records, values, parsed, rejected)
        for step in (self._known_only, self._first_seen):
            keep = step(records, parsed, rejected)
            if keep is not None:
                parsed.keep(keep)
        customer_ids, ev = parsed.customer_ids(), parsed.events
        offsets, watermarks = _positions(records, parsed.rows, ev.ms)
        return ColumnarBatch(records, customer_ids, ev, parsed.rows, rejected, offsets, watermarks, scanned)

    @staticmethod
    def _parse_rest(
        records: Sequence[Record], values: list[bytes | None], parsed: _Parsed, out: list[Rejected]
    ) -> None:
        """The records the scan left, one by one in record order as IngestGate takes them; the valid
        ones join the scanned events (their columns made by `to_arrays` itself)."""
        plain = np.zeros(len(records), dtype=np.bool_)
        plain[parsed.rows] = True
        more, txns = [], []
        for i in np.flatnonzero(~plain).tolist():
            value = values[i]
            if value is None:
                out.append(Rejected(records[i], "empty_message", "message has no value"))
                continue
            try:
                txns.append(parse_transaction(value))
                more.append(i)
            except InvalidEventError as exc:
                out.append(Rejected(records[i], exc.reason, exc.detail))
        if txns:
            index = {cid: k for k, cid in enumerate(parsed.names)}
            slow = to_arrays(txns, [index.setdefault(t.customer_id, len(index)) for t in txns])
            merged = np.concatenate([parsed.rows, np.array(more, dtype=np.int64)])
            order = np.argsort(merged, kind="stable")
            ids = [*parsed.txn_ids, *(t.txn_id for t in txns)]
            parsed.rows, parsed.events, parsed.names = merged[order], _select(parsed.events, order, slow), list(index)
            parsed.txn_ids, parsed.tidy = [ids[k] for k in order.tolist()], False

    def _known_only(self, records: Sequence[Record], parsed: _Parsed, out: list[Rejected]) -> Mask | None:
        """Reject events of customers the registry does not know; ask only about ids not yet known."""
        if self.known is None or not len(parsed.rows):
            return None
        cust, names, cache = parsed.events.cust, parsed.names, self._known_cache
        if cache.issuperset(names):  # all known (the usual case); every name is in use, nothing dropped yet
            return None
        present = np.unique(cust)
        ids = [names[c] for c in present.tolist()]
        ask = sorted(set(ids) - cache)
        if ask:
            cache.update(cid for cid, ok in zip(ask, self.known(ask), strict=True) if ok)
        known = np.zeros(len(names), dtype=np.bool_)
        known[present] = [cid in cache for cid in ids]
        ok: Mask = known[cust]
        if ok.all():
            return None
        for i, c in zip(parsed.rows[~ok].tolist(), cust[~ok].tolist(), strict=True):
            out.append(Rejected(records[i], "unknown_customer", f"customer_id {names[c]!r}"))
        return ok

    def _first_seen(self, records: Sequence[Record], parsed: _Parsed, out: list[Rejected]) -> Mask | None:
        """Reject ids seen before (in `recent` or earlier in the batch); remember the others, in order.

        A batch of new ids that fits is remembered with two set operations; otherwise ids are taken
        one by one as IngestGate does (forgetting mid-batch can even re-admit an id).
        """
        recent, txn_ids = self.recent, parsed.txn_ids
        if recent.add_all_if_new(txn_ids):
            return None
        dup = []
        for t in txn_ids:
            dup.append(t in recent)
            recent.add(t)  # a no-op for an id already there, which IngestGate skips
        for i, t in zip(parsed.rows[dup].tolist(), itertools.compress(txn_ids, dup), strict=True):
            out.append(Rejected(records[i], "duplicate_txn_id", f"txn_id {t!r} seen before"))
        return ~np.array(dup, dtype=np.bool_)


def _select(ev: EventArrays, idx: I64 | Mask, extra: EventArrays | None = None) -> EventArrays:
    """Rows `idx` of `ev` (of `ev` followed by `extra`, when given)."""
    cols = [getattr(ev, f.name) for f in fields(EventArrays)]
    if extra is not None:
        cols = [np.concatenate([c, getattr(extra, f.name)]) for c, f in zip(cols, fields(EventArrays), strict=True)]
    return EventArrays(*(c[idx] for c in cols))


def _positions(records: Sequence[Record], rows: I64, ms: I64) -> tuple[PerPartition, PerPartition]:
    """Next offset per partition (its last record's + 1) and newest accepted event time per partition."""
    n = len(records)
    topics = list(map(attrgetter("topic"), records))
    names = list(dict.fromkeys(topics))
    key = np.fromiter(map(attrgetter("partition"), records), dtype=np.int64, count=n)
    if len(names) > 1:
        key |= np.fromiter(map({t: k for k, t in enumerate(names)}.__getitem__, topics), dtype=np.int64, count=n) << 32
    uniq, inverse = np.unique(key, return_inverse=True)
    last, newest = np.zeros(len(uniq), dtype=np.int64), np.full(len(uniq), -1, dtype=np.int64)
    np.maximum.at(last, inverse, np.arange(n))
    np.maximum.at(newest, inverse[rows], ms)
    tps = [(names[k >> 32], k & 0xFFFFFFFF) for k in uniq.tolist()]
    offsets = dict(
        zip(tps, (np.fromiter(map(attrgetter("offset"), records), np.int64, n)[last] + 1).tolist(), strict=True)
    )
    return offsets, {tp: m for tp, m in zip(tps, newest.tolist(), strict=True) if m > -1}


def _scan(values: list[bytes], lengths: I64) -> _Parsed:
    """The values in the canonical layout, judged together (`rows` index `values`); the others are
    left to `parse_transaction`."""
    tpl, n = _template(), len(values)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=start[1:])
    size = int(start[-1])
    padded = b"".join([*values, bytes(40)])  # the padding keeps every fixed-width read in bounds
    u8 = np.frombuffer(padded, dtype=np.uint8)[:size]
    words: U64 = np.ndarray((size + 33,), dtype="<u8", buffer=padded, strides=(1,))  # 8 bytes at every offset
    quotes = np.flatnonzero(u8 == _QUOTE)
    first_q = np.searchsorted(quotes, start)
    ok = first_q[1:] - first_q[:-1] == tpl.quote_at[-1]
    refused = [np.flatnonzero(u8 == ord("\\"))] if b"\\" in padded else []  # escapes: the model's call
    if np.count_nonzero(u8 < 0x20):  # raw control characters (invalid in strings): orjson's call
        refused.append(np.flatnonzero(u8 < 0x20))
    if not padded.isascii():  # invalid UTF-8 is orjson's call
        for i in np.unique(np.searchsorted(start, np.flatnonzero(u8 >= 0x80), side="right") - 1).tolist():
            try:
                values[i].decode()
            except UnicodeDecodeError:
                refused.append(start[i : i + 1])
    for at in refused:
        ok[np.searchsorted(start, at, side="right") - 1] = False
    rows = np.flatnonzero(ok)
    if not len(rows):
        return _Parsed(rows, to_arrays([], []), [], [])
    # Each piece begins at a known quote (or at the comma just before it) and must be there, whole.
    begin = [start[rows]]
    begin += [
        quotes[first_q[rows] + q] - (p[0] != _QUOTE) for p, q in zip(tpl.pieces[1:], tpl.quote_at[1:-1], strict=True)
    ]
    good = begin[-1] + len(tpl.pieces[-1]) == start[rows + 1]
    for at, piece, cover in zip(begin, tpl.pieces, tpl.words, strict=True):
        span_bytes = len(piece)  # each piece's bytes gathered at once, then compared as 8-byte words
        got = np.ndarray((size + 40 - span_bytes,), dtype=f"V{span_bytes}", buffer=padded, strides=(1,))[at]
        for offset, word in cover:
            good &= np.ndarray((len(got),), dtype="<u8", buffer=got, offset=offset, strides=(span_bytes,)) == word
    if not good.all():
        rows, begin = rows[good], [b[good] for b in begin]
    span = {
        name: (at + len(p), nxt - at - len(p))
        for (name, _), p, at, nxt in zip(_LAYOUT, tpl.pieces[:-1], begin[:-1], begin[1:], strict=True)
    }
    good = np.ones(len(rows), dtype=np.bool_)
    for name, most in (("txn_id", 128), ("customer_id", 64), ("merchant", 200)):
        a, ln = span[name]
        good &= (ln <= most) & ((ln >= 1) | (name == "merchant")) & _plain_edges(words, a, ln)
    a, ln = span["currency"]
    w = words[a]  # three ASCII characters, no space at either end
    good &= (ln == 3) & (w & 0x808080 == 0) & (w & 0xFF != _SPACE) & ((w >> 16) & 0xFF != _SPACE)
    codes = {name: _match(words, *span[name], tpl.enums[name]) for name, _ in _ENUMS}
    for code in codes.values():
        good &= code >= 0
    ms, ts_ok = _timestamps(words, *span["ts"])
    (a, ln), (b, lb) = span["amount"], span["balance_after"]
    both, both_ok = _number(words, np.concatenate([a, b]), np.concatenate([ln, lb]))
    amount, balance = both[: len(rows)], both[len(rows) :]
    good &= ts_ok & both_ok[: len(rows)] & both_ok[len(rows) :] & (amount > 0) & (amount < 1e10)
    good &= np.abs(balance) < MAX_BALANCE
    if not good.all():
        rows, ms, amount, balance = rows[good], ms[good], amount[good], balance[good]
        codes = {name: c[good] for name, c in codes.items()}
        span = {name: (a[good], ln[good]) for name, (a, ln) in span.items()}
    cust, names = _codes(_strings(padded, *span["customer_id"]))
    which = (codes["direction"], codes["category"], codes["status"])
    kind, gambling, failed = tpl.columns
    events = EventArrays(
        cust=cust, day=ms // 86_400_000, ms=ms, minute=(ms % 86_400_000) // 60_000,
        units=np.floor(amount + 0.5).astype(np.int64), kind=kind[which], gambling=gambling[which], failed=failed[which],
        bal_p=np.rint(balance * 100).astype(np.int64),
    )  # fmt: skip
    return _Parsed(rows, events, names, _strings(padded, *span["txn_id"]).to_pylist())


def _plain_edges(words: U64, a: I64, ln: I64) -> Mask:
    """No whitespace at either end, conservatively: a lead byte of any non-ASCII space is refused.

    Control characters never get here (refused for the whole value), so ASCII whitespace is the
    space alone. A short string's last-three-bytes read starts in the piece before it: harmless.
    """
    first = words[a] & 0xFF
    tail = words[a + ln - 3]  # a 3-byte character's lead, a 2-byte character's lead, the last byte
    lead3, lead2, last = tail & 0xFF, (tail >> 8) & 0xFF, (tail >> 16) & 0xFF
    plain = (first != _SPACE) & (first != 0xC2) & ((first < 0xE1) | (first > 0xE3)) & (last != _SPACE)
    edges: Mask = (ln == 0) | (plain & (lead2 != 0xC2) & ((lead3 < 0xE1) | (lead3 > 0xE3)))
    return edges


def _match(words: U64, a: I64, ln: I64, table: list[tuple[int, int, int]]) -> I64:
    """Enum index of each value (-1 if none) by its first and last eight bytes and length: exact for
    values of up to 16 bytes (a shorter one reads on into the fixed piece after it, as its pattern)."""
    w0 = words[a]
    w1 = np.where(ln > 8, words[a + np.maximum(ln - 8, 0)], np.uint64(0))
    code = np.full(len(a), -1, dtype=np.int64)
    for i, (first, last, length) in enumerate(table):
        code[(w0 == first) & (w1 == last) & (ln == length)] = i
    return code


def _bytes(words: U64, a: I64, width: int) -> U8:
    """`width` bytes from each offset in `a`, as rows (the buffer's padding keeps reads in bounds)."""
    stacked = np.stack([words[a + 8 * k] for k in range((width + 7) // 8)], axis=1).astype("<u8")
    return stacked.view(np.uint8)[:, :width]


def _number(words: U64, a: I64, ln: I64) -> tuple[F64, Mask]:
    """Plain JSON decimals of at most 15 digits, as correctly rounded doubles: digits / 10**k."""
    width = int(np.clip(ln.max(initial=1), 1, 17))
    m = np.ascontiguousarray(_bytes(words, a, width).T)  # a row per character position
    d = m - np.uint8(48)
    within = np.arange(width)[:, None] < ln
    digit, dot, neg = (d < 10) & within, (m == ord(".")) & within, m[0] == ord("-")
    other = within & ~digit & ~dot
    other[0] &= ~neg
    ndot = np.count_nonzero(dot, axis=0)
    point = np.where(ndot > 0, dot.argmax(axis=0), ln)
    whole, frac = point - neg, np.where(ndot > 0, ln - point - 1, 0)
    zero_first = np.where(neg, m[min(1, width - 1)], m[0]) == ord("0")
    ok = (ln >= 1) & (ln <= 17) & ~other.any(axis=0) & (ndot <= 1) & (whole >= 1) & ((ndot == 0) | (frac >= 1))
    ok &= ~(zero_first & (whole > 1)) & (whole + frac <= 15)
    mantissa = np.zeros(len(a), dtype=np.int64)
    for c in range(width):
        mantissa = np.where(digit[c], mantissa * 10 + d[c], mantissa)
    value = mantissa.astype(np.float64) / 10.0 ** np.arange(23)[np.clip(frac, 0, 22)]
    return np.where(neg, -value, value), ok


def _timestamps(words: U64, a: I64, ln: I64) -> tuple[I64, Mask]:
    """`int(datetime.fromisoformat(ts).timestamp() * 1000)` for what `schema._ISO_UTCISH` matches.

    Claimed only where fromisoformat surely agrees: ASCII digits, real dates and times, offsets under
    24 h, years 1900-2199 (microseconds exact in a double, so the float steps are Python's).
    Each length and zone style is one fixed format, read from fixed columns.
    """
    ms, ok = np.zeros(len(a), dtype=np.int64), np.zeros(len(a), dtype=np.bool_)
    if not len(a):
        return ms, ok
    m = _bytes(words, a, 32)
    style = ln * 2 + (m[np.arange(len(a)), np.clip(ln, 1, 32) - 1] == ord("Z"))
    for s in np.unique(style).tolist():
        length, zulu = divmod(s, 2)
        zone = length - 1 if zulu else length - 6  # where "Z" or "+hh:mm" starts
        if length <= 32 and (zone == 19 or 1 <= zone - 20 <= 6):
            sel = np.flatnonzero(style == s)
            us, good = _iso(np.ascontiguousarray(m[sel, :length].T), zone, bool(zulu))
            ms[sel], ok[sel] = ((us.astype(np.float64) / 1e6) * 1000.0).astype(np.int64), good
    return ms, ok


def _iso(g: U8, zone: int, zulu: bool) -> tuple[I64, Mask]:
    """Microseconds since the epoch of one timestamp format (a row per character), and validity."""
    d = g - np.uint8(48)  # anything but a digit becomes >= 10

    def two(i: int) -> I64:
        number: I64 = d[i].astype(np.int64) * 10 + d[i + 1]
        return number

    text = b"0000-00-00T00:00:00" + (b"." + b"0" * (zone - 20) if zone > 19 else b"") + (b"Z" if zulu else b"+00:00")
    pattern = np.frombuffer(text, dtype=np.uint8)[:, None]
    good = np.where(pattern == ord("0"), d < 10, (g == pattern) | ((pattern == ord("+")) & (g == ord("-")))).all(axis=0)
    offset = 0 if zulu else np.where(g[zone] == ord("-"), -1, 1) * (two(zone + 1) * 60 + two(zone + 4))
    year, month, day, hour, minute, second = two(0) * 100 + two(2), two(5), two(8), two(11), two(14), two(17)
    frac_us = 10 ** np.arange(5, 25 - zone, -1) @ d[20:zone] if zone > 20 else 0
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = (
        np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)] + (month == 2) * leap
    )
    good &= (year >= 1900) & (year <= 2199) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    good &= (hour <= 23) & (minute <= 59) & (second <= 59)
    if not zulu:
        good &= (two(zone + 1) <= 23) & (two(zone + 4) <= 59)
    y = year - (month <= 2)  # days since 1970-01-01: H. Hinnant's days_from_civil (years start in March)
    era = y // 400
    yoe = y - era * 400
    doe = yoe * 365 + yoe // 4 - yoe // 100 + (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    seconds = (era * 146097 + doe - 719468) * 86400 + hour * 3600 + minute * 60 + second - offset * 60
    return seconds * 1_000_000 + frac_us, good


def _strings(joined: bytes, a: I64, ln: I64) -> Any:
    """The strings at [a, a + ln) as an Arrow array over `joined` (no copy of it): spans and the gaps
    between them are consecutive elements, and the spans are taken. Arrow makes the Python strings
    three times faster than slicing a decoded copy."""
    import pyarrow as pa

    if not len(a):
        return pa.array([], type=pa.large_string())
    bounds = np.empty(2 * len(a), dtype=np.int64)
    bounds[0::2], bounds[1::2] = a, a + ln
    both = pa.Array.from_buffers(pa.large_string(), len(bounds) - 1, [None, pa.py_buffer(bounds), pa.py_buffer(joined)])
    return both.take(pa.array(np.arange(0, len(bounds), 2)))


def _codes(strings: Any) -> tuple[I64, list[str]]:
    """Equal strings, equal codes, numbered by first appearance; and the strings of the codes."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(strings)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()
