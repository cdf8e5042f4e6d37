"""confluent-kafka (librdkafka) implementation of the transport interface: the default."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from equilibrate.errors import ServiceUnavailableError
from equilibrate.kafka.config import group_timeouts, security_options
from equilibrate.kafka.transport import OnAssign, OnRevoke, PartitionLag, Record
from equilibrate.kafka.transport import TopicPartition as TPKey
from equilibrate.settings import Settings

log = logging.getLogger(__name__)
#: librdkafka's own log lines (one per retry when a broker is down) go here instead of stderr; the
#: error callbacks above report each problem once. Shown with LOG_LEVEL=DEBUG.
_LIBRDKAFKA_LOG = logging.getLogger("equilibrate.kafka.librdkafka")


class _ErrorLogger:
    """Logs a client-level error once per kind, not once per retry (librdkafka retries by itself).

    A kind already reported is reported again only after `quiet_s`, so a broker that stays down
    gives a reminder a minute, not a line every 50 ms.
    """

    def __init__(self, who: str, quiet_s: float = 60.0) -> None:
        self.who = who
        self.quiet_s = quiet_s
        self.reported: dict[int, float] = {}
        self.seen: set[int] = set()  # every error code so far, logged or not
        self.silent = False  # record only (while the caller turns the errors into one message of its own)

    def __call__(self, err: KafkaError) -> None:
        now = time.monotonic()
        code = err.code()
        self.seen.add(code)
        if self.silent:
            return
        if now - self.reported.get(code, -self.quiet_s) >= self.quiet_s:
            self.reported[code] = now
            log.warning("%s: kafka %s", self.who, err.str())


class ConfluentProducer:
    def __init__(self, settings: Settings, *, client_id: str, linger_ms: int) -> None:
        self._failed = 0
        conf: dict[str, Any] = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "client.id": client_id,
            "linger.ms": linger_ms,
            "enable.idempotence": False,  # Tansu does not implement idempotent producers
            "acks": "all",
            "compression.type": "none",
            "queue.buffering.max.messages": 500_000,
            "batch.num.messages": 10_000,
            "message.timeout.ms": 120_000,
            "error_cb": _ErrorLogger(f"producer {client_id}"),
            "logger": _LIBRDKAFKA_LOG,
            **security_options(settings),
        }
        self._producer = Producer(conf)

    @property
    def failed(self) -> int:
        return self._failed

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            if self._failed == 1 or self._failed % 10_000 == 0:
                log.error("delivery failed (%d so far): %s", self._failed, err.str())

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room (back-pressure).
                self._producer.poll(0.05)

    def poll(self, timeout: float = 0.0) -> None:
        self._producer.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        remaining: int = self._producer.flush(timeout)
        return remaining

    def close(self) -> None:
        self._producer.flush(10)


class ConfluentConsumer:
    def __init__(self, settings: Settings, group_id: str, *, client_id: str, auto_offset_reset: str) -> None:
        poll, session, heartbeat = group_timeouts(settings)
        conf: dict[str, Any] = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": group_id,
            "client.id": client_id,
            "auto.offset.reset": auto_offset_reset,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "max.poll.interval.ms": poll,
            "session.timeout.ms": session,
            "heartbeat.interval.ms": heartbeat,
            "fetch.wait.max.ms": 50,
            "error_cb": _ErrorLogger(f"consumer {group_id}"),
            "logger": _LIBRDKAFKA_LOG,
            **security_options(settings),
        }
        self._consumer = Consumer(conf)
        self.group_id = group_id

    def subscribe(
        self, topics: Sequence[str], on_assign: OnAssign | None = None, on_revoke: OnRevoke | None = None
    ) -> None:
        def _assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if on_assign is not None:
                starts = on_assign([(tp.topic, tp.partition) for tp in partitions])
                for tp in partitions:
                    start = starts.get((tp.topic, tp.partition))
                    tp.offset = OFFSET_INVALID if start is None else start
            consumer.assign(partitions)

        def _revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if on_revoke is not None:
                on_revoke([(tp.topic, tp.partition) for tp in partitions])
            consumer.unassign()

        self._consumer.subscribe(list(topics), on_assign=_assign, on_revoke=_revoke, on_lost=_revoke)

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        messages = self._consumer.consume(max_records, timeout)
        try:  # the common case: no error events in the batch, one list comprehension
            return [
                Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])  # type: ignore[arg-type]
                for m in messages
                if m.error() is None
            ]
        finally:
            for m in messages:
                err = m.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error on %s[%s]: %s", m.topic(), m.partition(), err.str())

    def commit(self, offsets: dict[TPKey, int], *, wait: bool = True) -> None:
        if offsets:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            if wait:
                self._consumer.commit(offsets=tps, asynchronous=False)
            else:
                self._consumer.commit(offsets=tps, asynchronous=True)

    def assignment(self) -> list[TPKey]:
        return [(tp.topic, tp.partition) for tp in self._consumer.assignment()]

    def close(self) -> None:
        self._consumer.close()


class ConfluentAdmin:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._errors = _ErrorLogger("admin")
        conf = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "logger": _LIBRDKAFKA_LOG,
            "error_cb": self._errors,
            **security_options(settings),
        }
        self._admin = AdminClient(conf)

    def list_topics(self) -> dict[str, int]:
        try:
            meta = self._admin.list_topics(timeout=5)
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            if self._login_refused():
                st = self._settings
                raise ServiceUnavailableError(
                    f"Kafka broker at {st.kafka_bootstrap_servers} refused the SASL login of user "
                    f"{st.kafka_sasl_username!r} ({st.kafka_sasl_mechanism}): check KAFKA_SASL_USERNAME, "
                    "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
                ) from None
            raise ServiceUnavailableError(
                f"Kafka broker at {self._settings.kafka_bootstrap_servers} does not answer ({reason}): "
                "run `equilibrate broker` or set KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        return {name: len(t.partitions) for name, t in meta.topics.items() if not name.startswith("__")}

    def _login_refused(self) -> bool:
        """A SASL failure reaches error_cb, not the exception: serve the callbacks quietly and look."""
        self._errors.silent = True
        try:
            self._admin.poll(0)
        finally:
            self._errors.silent = False
        return KafkaError._AUTHENTICATION in self._errors.seen

    def create_topics(self, names: Sequence[str], partitions: int, replication: int) -> list[str]:
        existing = self.list_topics()
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        futures = self._admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in missing]
        )
        created = []
        for name, fut in futures.items():
            try:
                fut.result(timeout=15)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return created

    def consumer_lag(self, groups: Sequence[str] | None = None) -> list[PartitionLag]:
        if groups is None:
            listing = self._admin.list_consumer_groups().result(timeout=10)
            groups = sorted(g.group_id for g in listing.valid)
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        out: list[PartitionLag] = []
        for group in groups:
            fut = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            committed = fut[group].result(timeout=10).topic_partitions or []
            if not committed:
                continue
            ends = self._admin.list_offsets({TopicPartition(tp.topic, tp.partition): latest for tp in committed})
            end_of = {(k.topic, k.partition): f.result(timeout=10).offset for k, f in ends.items()}
            for tp in committed:
                off = tp.offset if tp.offset >= 0 else None
                out.append(PartitionLag(group, tp.topic, tp.partition, off, end_of[(tp.topic, tp.partition)]))
        return out

    def close(self) -> None:
        """AdminClient has no close; dropping the reference frees it."""
