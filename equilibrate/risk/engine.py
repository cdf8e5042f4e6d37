"""`equilibrate risk`: re-scores customers whose profile changed, and sweeps everyone as time passes.

Two kinds of work share one loop:

- Changes: the feature engine adds each changed customer to `eq:dirty`; every `risk_poll_s` the
  engine takes up to `risk_batch` of them (SPOP, so several engines split the work), scores them
  and writes the results, so a change is scored within a fraction of a second.
- Sweep: time-based signals (days since salary, inactivity) move while nothing arrives. Every
  `risk_sweep_interval_s`, when the stream watermark has reached a new day, a pass walks the
  registry (`eq:customers`, SSCAN cursor, `risk_sweep_batch` customers per cycle: never KEYS or
  SCAN over the keyspace) and re-scores everyone as of the watermark. A pass is interleaved with
  change batches, so changes keep their latency during it. A (re)start begins with a full pass,
  which also covers changes taken but not written when a previous process died.

Scores use the customer's rolling state (`cstate:{id}`) evaluated as of the watermark, the same
`compute` the feature engine uses. A level change is published to `risk-events` before the
batch is written to Redis: a crash in between re-publishes it after restart (at least once; the
event's customer_id + scored_at + risk_level identify duplicates), never loses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import orjson
import redis

from equilibrate.errors import ConfigError, ServiceUnavailableError
from equilibrate.features import store as feature_store
from equilibrate.features.compute import FEATURES, compute
from equilibrate.features.state import unpack_many
from equilibrate.kafka.transport import Producer, make_producer
from equilibrate.model import registry
from equilibrate.model.registry import Model
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk import store
from equilibrate.risk.assess import Assessment, assess
from equilibrate.risk.keys import LEVELS, STATS_KEY, TREND_KEY, level_index
from equilibrate.risk.policy import Policy, load_policy
from equilibrate.risk.rules import RiskRules, load_rules
from equilibrate.settings import Settings
from equilibrate.storage.customer_registry import KNOWN_CUSTOMERS_KEY
from equilibrate.storage.redis_client import connect, with_redis

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: Trend points kept (a day at one every 30 s, and then some).
TREND_MAXLEN = 4_000
T = TypeVar("T")


@dataclass
class ScoredBatch:
    scored: int = 0
    skipped: int = 0  # known customers without any transaction yet
    changes: int = 0


@dataclass
class _Pass:
    """A sweep pass in progress: where the registry walk is, and the day it scores as of."""

    cursor: int
    day: int
    started: float
    scored: int = 0


class RiskEngine:
    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        *,
        rules: RiskRules | None = None,
        policy: Policy | None = None,
        producer: Producer | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.rules = rules if rules is not None else load_rules(settings.risk_rules_file)
        self.policy = policy if policy is not None else load_policy(settings.policy_file)
        self.redis: redis.Redis = connect(settings)
        self.producer = producer if producer is not None else make_producer(settings, client_id="risk")
        self.heartbeat = Heartbeat(self.redis, "risk", settings.heartbeat_interval_s)
        self.sweep: _Pass | None = None
        self.swept_day: int | None = None  # the day the last complete pass scored as of
        self.last_pass_start = float("-inf")
        self._last_trend = float("-inf")
        self.model: Model | None = None
        self._model_checked = float("-inf")
        self._model_problem: str | None = None
        self.full_pass_due = True  # a (re)start scores everyone once, whatever the day
        self.totals = ScoredBatch()

    # -- scoring ----------------------------------------------------------------------------
    def score(self, ids: Sequence[str], watermark: int | None) -> ScoredBatch:
        """Score `ids` as of the watermark (or each one's newest event) and write the results."""
        a = self.assess_ids(ids, watermark)
        if a is None:
            return ScoredBatch(skipped=len(ids))
        previous = store.previous_state(self.redis, a.ids)
        a = a.held([prev.level for prev in previous], self.policy)
        events = [
            store.change_event(a, i, prev.level)
            for i, prev in enumerate(previous)
            if (prev.level or "LOW") != a.levels[i]
        ]
        self._publish(events)
        store.write_assessment(
            self.redis,
            a,
            events,
            previous=previous,
            changes_maxlen=self.settings.risk_changes_maxlen,
            stats={"scored": len(a), "level_changes": len(events)},
        )
        return ScoredBatch(len(a), len(ids) - len(a), len(events))

    def assess_ids(self, ids: Sequence[str], watermark: int | None) -> Assessment | None:
        """The assessment of those of `ids` that have a rolling state (None if none has), unwritten."""
        if not ids:
            return None
        blobs = feature_store.load_states(self.redis, ids)
        have = [i for i, b in enumerate(blobs) if b is not None]
        if not have:
            return None
        records = unpack_many([blobs[i] for i in have])
        last_ms = records["last_ms"].astype(np.int64)
        as_of_ms = last_ms if watermark is None else np.maximum(last_ms, watermark)
        features = compute(records, as_of_ms // DAY_MS)
        return assess([ids[i] for i in have], features, as_of_ms, self.rules, self.policy, model=self.model)

    # -- the model ------------------------------------------------------------------------------
    def refresh_model(self, *, force: bool = False) -> bool:
        """Follow the registry's `current` pointer; True when the model in use changed.

        A new model triggers a full pass, so every score moves to it together. A model that
        cannot be loaded is reported once and the previous one (or the rules) stays in use.
        """
        now = time.monotonic()
        if not force and now - self._model_checked < self.settings.risk_model_check_s:
            return False
        self._model_checked = now
        registry_dir = self.settings.model_registry_dir
        version = registry.current_version(registry_dir)
        in_use = None if self.model is None else self.model.version
        if version == in_use:
            return False
        if version is None:
            log.warning("no current model any more in %s: the rules decide again", registry_dir)
            self.model = None
        else:
            try:
                model = registry.load(registry_dir, version)
                if model.card.get("kind") != "pipeline" or not set(model.features) <= set(FEATURES):
                    raise ConfigError(f"model {version} was not trained on the pipeline's features")
            except (ConfigError, OSError, ValueError) as exc:
                problem = f"cannot use model {version}: {exc}"
                if problem != self._model_problem:
                    log.error("%s; keeping %s", problem, in_use or "the rules")
                    self._model_problem = problem
                return False
            self.model, self._model_problem = model, None
            log.info("scoring with model %s from now on (was %s)", version, in_use or "the rules")
        self.full_pass_due = True
        return True

    def _publish(self, events: Sequence[dict[str, object]]) -> None:
        if not events:
            return
        topic = self.settings.topic_risk_events
        for event in events:
            self.producer.produce(topic, orjson.dumps(event), key=str(event["customer_id"]).encode())
        left = self.producer.flush(30.0)
        if left:
            raise ServiceUnavailableError(f"{left} risk event(s) could not be delivered to {topic!r}; is Kafka up?")

    # -- the two kinds of work --------------------------------------------------------------
    def changes_step(self) -> ScoredBatch:
        ids = feature_store.take_dirty(self.redis, self.settings.risk_batch)
        if not ids:
            return ScoredBatch()
        started = time.perf_counter()
        done = self.score(ids, feature_store.watermark_ms(self.redis))
        log.debug("scored %d changed customers in %.0f ms", done.scored, (time.perf_counter() - started) * 1000)
        return done

    def sweep_step(self, *, force: bool = False) -> ScoredBatch:
        """One cycle of the sweep: start a pass when one is due, then score the next slice of it."""
        now = time.monotonic()
        if self.sweep is None:
            force = force or self.full_pass_due
            if not force and now - self.last_pass_start < self.settings.risk_sweep_interval_s:
                return ScoredBatch()
            self.last_pass_start = now
            watermark = feature_store.watermark_ms(self.redis)
            if watermark is None:
                return ScoredBatch()
            day = watermark // DAY_MS
            if not force and day == self.swept_day:
                return ScoredBatch()  # nothing time-based can have moved: same day, changes handled
            self.sweep = _Pass(cursor=0, day=day, started=now)
            self.full_pass_due = False
        sweep = self.sweep
        cursor, raw = self.redis.sscan(KNOWN_CUSTOMERS_KEY, sweep.cursor, count=self.settings.risk_sweep_batch)
        ids = sorted(x.decode() if isinstance(x, bytes) else str(x) for x in raw)
        done = self.score(ids, feature_store.watermark_ms(self.redis)) if ids else ScoredBatch()
        sweep.scored += done.scored
        sweep.cursor = int(cursor)
        if sweep.cursor == 0:
            log.info(
                "sweep as of day %s: %d customers in %.1f s",
                time.strftime("%Y-%m-%d", time.gmtime(sweep.day * 86_400)),
                sweep.scored,
                time.monotonic() - sweep.started,
            )
            self.swept_day, self.sweep = sweep.day, None
            self.redis.hincrby(STATS_KEY, "sweeps", 1)
        return done

    def rescore_all(self) -> int:
        """One full pass now, whatever the day (batch path: after a rules change, or a benchmark)."""
        self.refresh_model(force=True)
        total = self.sweep_step(force=True).scored
        while self.sweep is not None:
            total += self.sweep_step().scored
        return total

    def trend_point(self, *, force: bool = False) -> None:
        """Customers per level now, for the console's trend (wall clock: it shows the live system)."""
        now = time.time()
        if not force and now - self._last_trend < self.settings.risk_trend_interval_s:
            return
        self._last_trend = now
        with self.redis.pipeline(transaction=False) as pipe:
            for level in LEVELS:
                pipe.scard(level_index(level))
            counts = pipe.execute()
        point = {"at_ms": int(now * 1000), **{level: int(n) for level, n in zip(LEVELS, counts, strict=True)}}
        self.redis.xadd(TREND_KEY, point, maxlen=TREND_MAXLEN, approximate=True)  # type: ignore[arg-type]

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        log.info("risk engine: rules %s; full pass first, then changes and sweeps", self.rules.version)
        try:
            while not self.stop:
                self.refresh_model()
                changed = self._with_redis(self.changes_step)
                swept = self._with_redis(self.sweep_step)
                for part in (changed, swept):
                    self.totals.scored += part.scored
                    self.totals.changes += part.changes
                self.heartbeat.beat(
                    scored=self.totals.scored,
                    level_changes=self.totals.changes,
                    sweeping=self.sweep is not None,
                    rules=self.rules.version,
                    model=None if self.model is None else self.model.version,
                )
                self._with_redis(self.trend_point)
                if not changed.scored and self.sweep is None:
                    self.stop.wait(self.settings.risk_poll_s)
        finally:
            self.heartbeat.clear()
            self.producer.flush(10.0)
            self.producer.close()
            log.info("risk engine stopped: %d scores, %d level changes", self.totals.scored, self.totals.changes)

    def _with_redis(self, call: Callable[[], T]) -> T:
        return with_redis(self.redis, call)
