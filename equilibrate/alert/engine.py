"""`equilibrate interventions`: from risk events to proposed cases, approved messages to sends, and
sends to outcomes, every step in the audit log.

One loop does five kinds of work:

1. Risk events (`risk-events`): a customer entering MEDIUM or above with no open case gets a proposed
   case from the policy engine and the contact policy (a vulnerable customer: a specialist case,
   never contacted automatically; no channel allowed at all: closed as contact_blocked with the
   reason). With AUTO_INTERVENE on, a proposal on a low-touch channel above the score threshold is
   approved by `system`; everything else waits for an operator.
2. Transactions (`transactions`, failed repayments only): missed payments of customers being
   followed after an intervention; an open case that was sent closes as missed_payment.
3. The outbox (`sender`): approved messages sent, policy re-checked at the moment of sending.
4. Due follow-ups (`outcomes`): no response after INTERVENTION_RESPONSE_DAYS, missed payments in
   the 30 and 60 days after a send, counted for the cure rates.
5. The audit queue moved into `data/intervention_log.csv`; each row also published to the
   `interventions` topic for the bank's own systems.

Time is event time (the stream watermark): replays and tests decide the same way every time.
Offsets are committed after a batch is handled; every handler is idempotent (one open case per
customer, txn ids, message ids), so a batch handled twice after a crash changes nothing.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TypeVar

import orjson
import redis

from equilibrate.alert import audit_queue, outcomes
from equilibrate.alert.actions import SYSTEM, CaseActions, audit_record, parse_event_time
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore, case_key
from equilibrate.alert.channels import Channel, make_channels
from equilibrate.alert.contact_policy import ContactRules
from equilibrate.alert.proposer import Proposer, RiskEvent, count_stats, read_risk_event
from equilibrate.alert.sender import Sender
from equilibrate.errors import InvalidEventError, ServiceUnavailableError
from equilibrate.features import store as feature_store
from equilibrate.kafka.dlq import DeadLetters
from equilibrate.kafka.transport import Consumer, Producer, Record, TopicPartition, make_consumer, make_producer
from equilibrate.ops.heartbeat import Heartbeat
from equilibrate.ops.stopping import StopFlag
from equilibrate.risk.policy import Policy
from equilibrate.schema import Txn, parse_transaction
from equilibrate.settings import Settings
from equilibrate.storage.redis_client import connect, with_redis

log = logging.getLogger(__name__)

GROUP = "equilibrate-interventions"

T = TypeVar("T")
#: Only a transaction whose bytes say "failed" can be a missed payment: the rest are not parsed.
_FAILED = b'"failed"'


class InterventionEngine:
    def __init__(
        self,
        settings: Settings,
        stop: StopFlag,
        *,
        policy: Policy,
        channels: Mapping[str, Channel] | None = None,
        group: str = GROUP,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.policy = policy
        self.rules = ContactRules.from_settings(settings)
        self.redis: redis.Redis = connect(settings)
        self.cases = CaseStore(self.redis)
        self.actions = CaseActions(self.redis)
        self.audit_log = AuditLog(settings.data_dir)
        consumer_name = settings.interventions_consumer or socket.gethostname()
        self.sender = Sender(
            self.redis, settings, make_channels(settings) if channels is None else channels, self.rules,
            consumer=consumer_name,
        )  # fmt: skip
        self.producer: Producer = make_producer(settings, client_id="interventions")
        self.consumer: Consumer = make_consumer(settings, group, client_id="interventions")
        self.dead_letters = DeadLetters(self.producer, settings.topic_dlq, "interventions")
        self.heartbeat = Heartbeat(self.redis, "interventions", settings.heartbeat_interval_s)
        self.proposer = Proposer(self.redis, settings, policy)
        self._clock_note = False

    # -- time -------------------------------------------------------------------------------
    def now(self) -> datetime:
        """Event time: the stream watermark (wall clock only before any event has been seen)."""
        ms = feature_store.watermark_ms(self.redis)
        if ms is None:
            if not self._clock_note:
                log.info("no stream watermark yet: the contact policy uses the wall clock until events arrive")
                self._clock_note = True
            return datetime.now(UTC)
        return datetime.fromtimestamp(ms / 1000, UTC)

    def _count(self, **counts: int) -> None:
        count_stats(self.redis, **counts)

    # -- 1. risk events -> proposals --------------------------------------------------------
    def on_risk_events(self, records: Sequence[Record]) -> int:
        opened = 0
        for record in records:
            try:
                event = read_risk_event(record.value)
            except InvalidEventError as exc:
                self.dead_letters.reject(record, exc.reason, exc.detail)
                continue
            if self.propose(event) is not None:
                opened += 1
        return opened

    def propose(self, event: RiskEvent) -> dict[str, str] | None:
        return self.proposer.propose(event)

    # -- 2. transactions -> missed payments -------------------------------------------------
    def on_transactions(self, records: Sequence[Record]) -> int:
        txns: list[Txn] = []
        for record in records:
            if record.value is None or _FAILED not in record.value:
                continue
            try:
                txns.append(parse_transaction(record.value))
            except InvalidEventError:
                continue  # the archive and the feature engine send bad events to the DLQ
        missed = outcomes.note_missed(self.redis, txns)
        for txn in missed:
            case_id = self.cases.open_case(txn.customer_id)
            case = self.cases.get(case_id) if case_id else None
            if case_id and case and case["state"] in ("sent", "delivered", "failed") and case.get("sent_at"):
                sent_at = parse_event_time(case["sent_at"])
                if sent_at is not None and txn.ts > sent_at:
                    self.actions.close(case_id, "missed_payment", SYSTEM, f"failed repayment {txn.txn_id}")
        self._count(missed_payments=len(missed))
        return len(missed)

    # -- 4. follow-ups ----------------------------------------------------------------------
    def follow_ups(self, now: datetime) -> int:
        now_ms = int(now.timestamp() * 1000)
        due = outcomes.due(self.redis, now_ms)
        for item in due:
            case = self.cases.get(item.case_id)
            if case is None or item.kind not in ("respond", *map(str, outcomes.WINDOWS)):
                self.redis.zrem(outcomes.DUE_KEY, item.member)
                continue
            if item.kind == "respond":
                if case["state"] in ("sent", "delivered"):
                    days = self.settings.intervention_response_days
                    self.actions.close(item.case_id, "no_response", SYSTEM, f"no response in {days} days")
                self.redis.zrem(outcomes.DUE_KEY, item.member)
                continue
            self._follow_up(item, case)
        outcomes.expire_watch(self.redis, now_ms)
        return len(due)

    def _follow_up(self, item: outcomes.Due, case: dict[str, str]) -> None:
        days = int(item.kind)
        sent_at = parse_event_time(case.get("sent_at", ""))
        if sent_at is None:
            self.redis.zrem(outcomes.DUE_KEY, item.member)
            return
        start = int(sent_at.timestamp() * 1000)
        missed = outcomes.missed_between(self.redis, case["customer_id"], start, start + days * outcomes.DAY_MS)
        verdict = f"{missed} missed payment(s)" if missed else "no missed payment"
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(outcomes.DUE_KEY, item.member)
            pipe.hset(case_key(item.case_id), f"missed_{days}d", "true" if missed else "false")
            outcomes.count_follow_up(pipe, days, case, bool(missed))
            audit_queue.queue(pipe, audit_record(case, "follow_up", actor=SYSTEM,
                                                 detail=f"{days} days after the send: {verdict}"))  # fmt: skip
            pipe.execute()

    # -- 5. the audit log -------------------------------------------------------------------
    def flush_audit(self) -> int:
        if not audit_queue.pending(self.redis):
            return 0
        rows = audit_queue.flush(self.redis, self.audit_log)
        topic = self.settings.topic_interventions
        for row in rows:
            body = {"event_id": row.event_id, "recorded_at": row.recorded_at, "row_hash": row.row_hash}
            body |= {k: v for k, v in asdict(row.record).items() if k != "event_id"}
            self.producer.produce(topic, orjson.dumps(body), key=row.record.customer_id.encode())
        self.producer.poll(0)
        return len(rows)

    # -- the loop ---------------------------------------------------------------------------
    def step(self) -> int:
        """One round of all five kinds of work; returns how much was done (0: idle)."""
        records = self.consumer.consume(self.settings.consume_batch, 0.1)
        done = 0
        if records:
            risk = [r for r in records if r.topic == self.settings.topic_risk_events]
            txns = [r for r in records if r.topic == self.settings.topic_transactions]
            done += self._with_redis(lambda: self.on_risk_events(risk)) + len(txns)
            self._with_redis(lambda: self.on_transactions(txns))
            with self.redis.pipeline(transaction=False) as pipe:
                self.dead_letters.add_counts_to(pipe)
                pipe.execute()
            self.consumer.commit(_next_offsets(records), wait=False)
        now = self._with_redis(self.now)
        done += self._with_redis(lambda: self.sender.step(now))
        done += self._with_redis(lambda: self.follow_ups(now))
        done += self._with_redis(self.flush_audit)
        return done

    def run(self) -> None:
        topics = [self.settings.topic_risk_events, self.settings.topic_transactions]
        self.consumer.subscribe(topics)
        mode = f"on above score {self.settings.auto_intervene_min_score:g}" if self.settings.auto_intervene else "off"
        log.info("interventions: channels %s; AUTO_INTERVENE %s", ", ".join(sorted(self.sender.channels)), mode)
        try:
            while not self.stop:
                try:
                    self.step()
                except ServiceUnavailableError:
                    if not self.stop:
                        raise
                    break  # asked to stop while Redis was away: the unfinished work is in Redis and Kafka
                c = self.sender.counts
                self.heartbeat.beat(sent=c.sent, failed=c.failed, blocked=c.blocked, deferred=c.deferred)
        finally:
            self.heartbeat.clear()
            try:
                self.flush_audit()  # once: a Redis that is gone keeps the rows queued for the next start
            except redis.RedisError as exc:
                log.warning("audit rows stay queued in Redis until the next start (%s)", exc)
            self.producer.flush(10.0)
            self.producer.close()
            self.consumer.close()
            c = self.sender.counts
            log.info("interventions stopped: %d sent, %d failed, %d blocked", c.sent, c.failed, c.blocked)

    def _with_redis(self, call: Callable[[], T]) -> T:
        return with_redis(self.redis, call, stopping=lambda: bool(self.stop))


def _next_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        key = (r.topic, r.partition)
        offsets[key] = max(offsets.get(key, 0), r.offset + 1)
    return offsets
