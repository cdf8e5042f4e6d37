"""The ingest gate every transaction consumer applies: valid, known customer, not a duplicate.

Pure logic: the known-customer lookup is injected (one call per batch), so the archive and the
feature engine apply exactly the same rules, and tests can run it without Redis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from equilibrate.errors import InvalidEventError
from equilibrate.kafka.transport import Record
from equilibrate.schema import Txn, parse_transaction

KnownLookup = Callable[[Sequence[str]], list[bool]]


class RecentIds:
    """Bounded memory of recently accepted txn ids (oldest forgotten first).

    Duplicates come from producer retries and from exports that repeat rows: both arrive close
    together, so a window of recent ids catches them without keeping every id ever seen.
    """

    def __init__(self, capacity: int = 2_000_000) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def __contains__(self, txn_id: object) -> bool:
        return txn_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, txn_id: str) -> None:
        if txn_id in self._ids:
            return
        self._ids.add(txn_id)
        self._order.append(txn_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())

    def add_all_if_new(self, txn_ids: Sequence[str]) -> bool:
        """Remember a whole batch in two set operations when every id is new and they all fit.

        Returns False, changing nothing, when any id was seen before (or repeats in the batch) or
        the window would overflow: the caller then takes the ids one by one with `add`.
        """
        ids = self._ids
        if len(ids) + len(txn_ids) > self.capacity or not ids.isdisjoint(txn_ids):
            return False
        size = len(ids)
        ids.update(txn_ids)
        if len(ids) - size != len(txn_ids):
            ids.difference_update(txn_ids)
            return False
        self._order.extend(txn_ids)
        return True

    def extend(self, txn_ids: Iterable[str]) -> None:
        for txn_id in txn_ids:
            self.add(txn_id)


class Accepted(NamedTuple):  # NamedTuple: built once per event, several times cheaper than a dataclass
    record: Record
    txn: Txn


class Rejected(NamedTuple):
    record: Record
    reason: str
    detail: str


class IngestGate:
    """Splits a consumed batch into accepted transactions and rejections with a reason.

    Reasons: the schema's codes (not_json, bad_amount, bad_direction, bad_timestamp, missing_*...),
    `unknown_customer` and `duplicate_txn_id`.
    """

    def __init__(self, known: KnownLookup | None, recent: RecentIds | None = None) -> None:
        self.known = known
        self.recent = recent if recent is not None else RecentIds()
        # Customers leave the registry only by a deliberate purge, never mid-stream, so a "known"
        # answer is remembered; only ids not seen before are looked up.
        self._known_cache: set[str] = set()

    def check(self, records: Sequence[Record]) -> tuple[list[Accepted], list[Rejected]]:
        parsed: list[Accepted] = []
        rejected: list[Rejected] = []
        for rec in records:
            if rec.value is None:
                rejected.append(Rejected(rec, "empty_message", "message has no value"))
                continue
            try:
                parsed.append(Accepted(rec, parse_transaction(rec.value)))
            except InvalidEventError as exc:
                rejected.append(Rejected(rec, exc.reason, exc.detail))
        if self.known is not None and parsed:
            cache = self._known_cache
            ask = sorted({a.txn.customer_id for a in parsed} - cache)
            if ask:
                cache.update(cid for cid, ok in zip(ask, self.known(ask), strict=True) if ok)
            unknown = [a for a in parsed if a.txn.customer_id not in cache]
            rejected += [Rejected(a.record, "unknown_customer", f"customer_id {a.txn.customer_id!r}") for a in unknown]
            if unknown:
                parsed = [a for a in parsed if a.txn.customer_id in cache]
        accepted: list[Accepted] = []
        for a in parsed:
            if a.txn.txn_id in self.recent:
                rejected.append(Rejected(a.record, "duplicate_txn_id", f"txn_id {a.txn.txn_id!r} seen before"))
                continue
            self.recent.add(a.txn.txn_id)
            accepted.append(a)
        return accepted, rejected
