"""Known customers: the set consumers check against, and each customer's static attributes.

`eq:customers` (a SET) answers "is this a customer we know?" for a whole batch in one round trip
(SMISMEMBER). Static attributes (name, city, employment, contact preferences, consents) are stored
in the customer's profile hash `customer:{id}`, beside the live features, so
`redis-cli hgetall customer:100` shows everything an operator needs.

Registration also keeps the indices the console and the API filter and search with (never a scan):

    eq:idx:city:{city}              SET   customers in each city
    eq:idx:employment:{employment}  SET   customers by employment
    eq:idx:values:{field}           SET   the values seen for each indexed field (the console's filter choices)
    eq:idx:names                    ZSET  "lower-case name\x00id", all at score 0: prefix search by ZRANGEBYLEX
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import redis

KNOWN_CUSTOMERS_KEY = "eq:customers"
NAMES_KEY = "eq:idx:names"
#: Static attributes with an index set per value.
INDEXED = ("city", "employment")
BATCH = 5_000


def attribute_index(field: str, value: str) -> str:
    return f"eq:idx:{field}:{value}"


def values_key(field: str) -> str:
    return f"eq:idx:values:{field}"


def name_entry(name: str, customer_id: str) -> str:
    return f"{name.strip().lower()}\x00{customer_id}"


def profile_key(customer_id: str) -> str:
    return f"customer:{customer_id}"


def register(client: redis.Redis, customers: Iterable[Mapping[str, object]], *, with_attributes: bool = True) -> int:
    """Add customers (dicts with at least `customer_id`) to the registry; return how many were given.

    Registering a customer again with another city, employment or name moves their index entries:
    the values they had are read first (one round trip per batch) and their entries removed.
    """
    count = 0
    batch: list[tuple[str, dict[str, str]]] = []
    for row in customers:
        cid = str(row["customer_id"])
        attrs: dict[str, str] = {}
        if with_attributes:
            attrs = {k: ("" if v is None else str(v)) for k, v in row.items() if k != "customer_id"}
        batch.append((cid, attrs))
        count += 1
        if len(batch) >= BATCH:
            _register_batch(client, batch)
            batch = []
    if batch:
        _register_batch(client, batch)
    return count


def _register_batch(client: redis.Redis, batch: Sequence[tuple[str, dict[str, str]]]) -> None:
    indexed = (*INDEXED, "name")
    with_attrs = [(cid, attrs) for cid, attrs in batch if attrs]
    before: list[list[bytes | None]] = []
    if with_attrs:
        with client.pipeline(transaction=False) as read:
            for cid, _ in with_attrs:
                read.hmget(profile_key(cid), indexed)
            before = read.execute()
    with client.pipeline(transaction=False) as pipe:
        for (cid, attrs), old_values in zip(with_attrs, before, strict=True):
            old = {f: v.decode() for f, v in zip(indexed, old_values, strict=True) if v}
            pipe.hset(profile_key(cid), mapping=attrs)  # type: ignore[arg-type]
            for name in INDEXED:
                value = attrs.get(name)
                if value is None:
                    continue  # not given: the customer keeps the value they had
                if old.get(name) and old[name] != value:
                    pipe.srem(attribute_index(name, old[name]), cid)
                if value:
                    pipe.sadd(attribute_index(name, value), cid)
                    pipe.sadd(values_key(name), value)
            if "name" in attrs:
                if old.get("name") and old["name"] != attrs["name"]:
                    pipe.zrem(NAMES_KEY, name_entry(old["name"], cid))
                if attrs["name"]:
                    pipe.zadd(NAMES_KEY, {name_entry(attrs["name"], cid): 0})
        pipe.sadd(KNOWN_CUSTOMERS_KEY, *(cid for cid, _ in batch))
        pipe.execute()


def register_ids(client: redis.Redis, customer_ids: Iterable[str]) -> int:
    return register(client, ({"customer_id": cid} for cid in customer_ids), with_attributes=False)


def known(client: redis.Redis, customer_ids: Sequence[str]) -> list[bool]:
    """Membership of each id, in order, in one round trip."""
    if not customer_ids:
        return []
    return [bool(x) for x in client.smismember(KNOWN_CUSTOMERS_KEY, list(customer_ids))]


def count(client: redis.Redis) -> int:
    return int(client.scard(KNOWN_CUSTOMERS_KEY))
