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
    """Add customers (dicts with at least `customer_id`) to the registry; return how many were given."""
    count = 0
    pipe = client.pipeline(transaction=False)
    ids: list[str] = []
    for row in customers:
        cid = str(row["customer_id"])
        ids.append(cid)
        if with_attributes:
            attrs = {k: ("" if v is None else str(v)) for k, v in row.items() if k != "customer_id"}
            if attrs:
                pipe.hset(profile_key(cid), mapping=attrs)  # type: ignore[arg-type]
                for name in INDEXED:
                    if attrs.get(name):
                        pipe.sadd(attribute_index(name, attrs[name]), cid)
                        pipe.sadd(values_key(name), attrs[name])
                if attrs.get("name"):
                    pipe.zadd(NAMES_KEY, {name_entry(attrs["name"], cid): 0})
        count += 1
        if len(ids) >= BATCH:
            pipe.sadd(KNOWN_CUSTOMERS_KEY, *ids)
            pipe.execute()
            ids = []
    if ids:
        pipe.sadd(KNOWN_CUSTOMERS_KEY, *ids)
    pipe.execute()
    return count


def register_ids(client: redis.Redis, customer_ids: Iterable[str]) -> int:
    return register(client, ({"customer_id": cid} for cid in customer_ids), with_attributes=False)


def known(client: redis.Redis, customer_ids: Sequence[str]) -> list[bool]:
    """Membership of each id, in order, in one round trip."""
    if not customer_ids:
        return []
    return [bool(x) for x in client.smismember(KNOWN_CUSTOMERS_KEY, list(customer_ids))]


def count(client: redis.Redis) -> int:
    return int(client.scard(KNOWN_CUSTOMERS_KEY))
