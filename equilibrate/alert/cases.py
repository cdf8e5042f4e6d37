"""Intervention cases in Redis: one open case per customer, steps checked against the lifecycle.

    case:{case_id}              HASH  the case (state, customer, proposal, message, policy checks, ...)
    eq:cases:open:{customer}    STRING the customer's open case id (SET NX: never two at once)
    eq:cases:proposed           ZSET  proposed cases by risk score (the console's approval queue)
    eq:cases:seq                STRING case id counter
    eq:cases:all                ZSET  every case by creation time (ms)
    eq:cases:state:{state}      ZSET  the cases in each state by the time they entered it (ms)
    eq:cases:customer:{id}      ZSET  each customer's cases by creation time (ms): their contact history
    eq:cases:changes            STREAM every step (case, customer, state, outcome), bounded: the API's live updates

Every step is a WATCHed read-check-write on the case hash, so two actors (the console, the API,
the engine) racing on one case cannot both move it: the loser gets a TransitionError naming the
state the case is now in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import cast

import redis

from equilibrate.alert.lifecycle import STATES, TransitionError, check_transition, is_open

CASE_PREFIX = "case:"
OPEN_PREFIX = "eq:cases:open:"
PROPOSED_KEY = "eq:cases:proposed"
SEQ_KEY = "eq:cases:seq"
ALL_KEY = "eq:cases:all"
STATE_PREFIX = "eq:cases:state:"
CUSTOMER_PREFIX = "eq:cases:customer:"
CHANGES_KEY = "eq:cases:changes"
CHANGES_MAXLEN = 10_000


def _announce(pipe: redis.client.Pipeline, case: Mapping[str, str]) -> None:
    """A step on the changes stream, in the step's own MULTI."""
    event = {k: case.get(k, "") for k in ("case_id", "customer_id", "state", "outcome", "channel", "risk_level",
                                           "last_actor", "updated_at")}  # fmt: skip
    pipe.xadd(CHANGES_KEY, event, maxlen=CHANGES_MAXLEN, approximate=True)  # type: ignore[arg-type]


#: Commands to run in a case step's MULTI, given the case as it will be written.
Also = Callable[[redis.client.Pipeline, dict[str, str]], None]


def case_key(case_id: str) -> str:
    return CASE_PREFIX + case_id


def open_key(customer_id: str) -> str:
    return OPEN_PREFIX + customer_id


def state_key(state: str) -> str:
    return STATE_PREFIX + state


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _decoded(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


class CaseStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def propose(
        self,
        customer_id: str,
        fields: Mapping[str, object],
        *,
        priority: float = 0.0,
        also: Also | None = None,
    ) -> dict[str, str] | None:
        """Open a proposed case for the customer and return it; None when the customer has an open one.

        The open-case marker, the case and the queue entry are written in one MULTI (with whatever
        `also` adds: the audit row), so a crash leaves either all of them or none.
        """
        marker = open_key(customer_id)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(marker)  # type: ignore[no-untyped-call]
                    if pipe.exists(marker):
                        pipe.reset()
                        return None
                    case_id = f"K{int(self.redis.incr(SEQ_KEY)):08d}"
                    now = _now()
                    record = {k: _text(v) for k, v in fields.items()} | {
                        "case_id": case_id,
                        "customer_id": customer_id,
                        "state": "proposed",
                        "created_at": now,
                        "updated_at": now,
                    }
                    pipe.multi()
                    pipe.set(marker, case_id)
                    pipe.hset(case_key(case_id), mapping=record)  # type: ignore[arg-type]
                    pipe.zadd(PROPOSED_KEY, {case_id: priority})
                    pipe.zadd(ALL_KEY, {case_id: _ms()})
                    pipe.zadd(CUSTOMER_PREFIX + customer_id, {case_id: _ms()})
                    _announce(pipe, record)
                    pipe.zadd(state_key("proposed"), {case_id: _ms()})
                    if also is not None:
                        also(pipe, record)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def get(self, case_id: str) -> dict[str, str] | None:
        raw = cast(Mapping[bytes, bytes], self.redis.hgetall(case_key(case_id)))
        return _decoded(raw) or None

    def open_case(self, customer_id: str) -> str | None:
        value = self.redis.get(open_key(customer_id))
        return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))

    def proposed(self, limit: int = 100) -> list[str]:
        """Proposed cases, highest risk first."""
        ids = cast(list[bytes], self.redis.zrevrange(PROPOSED_KEY, 0, limit - 1))
        return [i.decode() for i in ids]

    def recent(self, limit: int = 50, *, state: str | None = None) -> list[dict[str, str]]:
        """The newest cases (in `state`, newest to enter it first), each as stored."""
        key = ALL_KEY if state is None else state_key(state)
        ids = cast(list[bytes], self.redis.zrevrange(key, 0, limit - 1))
        return self.get_many([i.decode() for i in ids])

    def for_customer(self, customer_id: str, limit: int = 50) -> list[dict[str, str]]:
        """The customer's cases, newest first."""
        ids = cast(list[bytes], self.redis.zrevrange(CUSTOMER_PREFIX + customer_id, 0, limit - 1))
        return self.get_many([i.decode() for i in ids])

    def get_many(self, case_ids: list[str]) -> list[dict[str, str]]:
        with self.redis.pipeline(transaction=False) as pipe:
            for case_id in case_ids:
                pipe.hgetall(case_key(case_id))
            found = pipe.execute()
        return [case for case in (_decoded(raw) for raw in found) if case]

    def counts(self) -> dict[str, int]:
        """How many cases are in each state."""
        with self.redis.pipeline(transaction=False) as pipe:
            for state in STATES:
                pipe.zcard(state_key(state))
            return dict(zip(STATES, map(int, pipe.execute()), strict=True))

    def transition(
        self,
        case_id: str,
        target: str,
        *,
        actor: str,
        outcome: str | None = None,
        fields: Mapping[str, object] | None = None,
        expect: str | None = None,
        also: Also | None = None,
    ) -> dict[str, str]:
        """Move the case to `target` (checked against the lifecycle) and return it as written.

        `expect`: the state the caller believes the case is in; a different current state is
        refused (an operator approving a case someone else has just rejected). `also` adds commands to
        the same MULTI (the audit row, the outbox entry), given the case as it will be written.
        """
        key = case_key(case_id)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    current = _decoded(cast(Mapping[bytes, bytes], pipe.hgetall(key)))
                    if not current:
                        raise TransitionError(f"no case {case_id}")
                    state = current["state"]
                    if expect is not None and state != expect:
                        raise TransitionError(f"case {case_id} is {state}, not {expect}: someone acted on it first")
                    check_transition(case_id, state, target, outcome)
                    update = {k: _text(v) for k, v in (fields or {}).items()} | {
                        "state": target,
                        "updated_at": _now(),
                        "last_actor": actor,
                    }
                    if outcome is not None:
                        update["outcome"] = outcome
                    pipe.multi()
                    pipe.hset(key, mapping=update)  # type: ignore[arg-type]
                    if state == "proposed":
                        pipe.zrem(PROPOSED_KEY, case_id)
                    pipe.zrem(state_key(state), case_id)
                    pipe.zadd(state_key(target), {case_id: _ms()})
                    if not is_open(target):
                        pipe.delete(open_key(current["customer_id"]))
                    written = current | update
                    _announce(pipe, written)
                    if also is not None:
                        also(pipe, written)
                    pipe.execute()
                    return written
                except redis.WatchError:
                    continue
