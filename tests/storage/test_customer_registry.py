"""The customer registry and its indices, on the test session's Redis."""

from __future__ import annotations

from typing import cast

import redis

from equilibrate.storage.customer_registry import (
    KNOWN_CUSTOMERS_KEY,
    NAMES_KEY,
    attribute_index,
    known,
    register,
    register_ids,
    values_key,
)


def _members(client: redis.Redis, key: str) -> set[str]:
    return {m.decode() for m in cast(set[bytes], client.smembers(key))}


def _names(client: redis.Redis) -> list[str]:
    return [m.decode() for m in cast(list[bytes], client.zrange(NAMES_KEY, 0, -1))]


def test_registration_indexes_city_employment_and_name(redis_client: redis.Redis) -> None:
    register(redis_client, [
        {"customer_id": "C1", "name": "Ada Lovelace", "city": "Leeds", "employment": "salaried"},
        {"customer_id": "C2", "name": "Alan Turing", "city": "Leeds", "employment": "self_employed"},
    ])  # fmt: skip
    assert _members(redis_client, attribute_index("city", "Leeds")) == {"C1", "C2"}
    assert _members(redis_client, attribute_index("employment", "salaried")) == {"C1"}
    assert _members(redis_client, values_key("employment")) == {"salaried", "self_employed"}
    assert _names(redis_client) == ["ada lovelace\x00C1", "alan turing\x00C2"]
    assert known(redis_client, ["C1", "C2", "C3"]) == [True, True, False]


def test_registering_again_with_new_values_moves_the_index_entries(redis_client: redis.Redis) -> None:
    register(redis_client, [{"customer_id": "C1", "name": "Ada Byron", "city": "Leeds", "employment": "salaried"}])
    register(redis_client, [{"customer_id": "C1", "name": "Ada Lovelace", "city": "York", "employment": "salaried"}])
    assert _members(redis_client, attribute_index("city", "Leeds")) == set()
    assert _members(redis_client, attribute_index("city", "York")) == {"C1"}
    assert _members(redis_client, attribute_index("employment", "salaried")) == {"C1"}
    assert _names(redis_client) == ["ada lovelace\x00C1"]
    assert redis_client.hget("customer:C1", "city") == b"York"


def test_a_field_left_out_keeps_its_value_and_an_empty_one_clears_it(redis_client: redis.Redis) -> None:
    register(redis_client, [{"customer_id": "C1", "name": "Ada", "city": "Leeds", "employment": "salaried"}])
    register(redis_client, [{"customer_id": "C1", "phone": "+447700900001"}])  # no indexed field given
    assert _members(redis_client, attribute_index("city", "Leeds")) == {"C1"}
    register(redis_client, [{"customer_id": "C1", "city": ""}])
    assert _members(redis_client, attribute_index("city", "Leeds")) == set()
    assert _members(redis_client, attribute_index("employment", "salaried")) == {"C1"}
    assert _names(redis_client) == ["ada\x00C1"]


def test_ids_only_registration_touches_no_attribute(redis_client: redis.Redis) -> None:
    register(redis_client, [{"customer_id": "C1", "city": "Leeds"}])
    assert register_ids(redis_client, (f"C{n}" for n in range(1, 5_002))) == 5_001  # more than one batch
    assert redis_client.scard(KNOWN_CUSTOMERS_KEY) == 5_001
    assert _members(redis_client, attribute_index("city", "Leeds")) == {"C1"}
