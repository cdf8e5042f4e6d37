"""kafka-python implementation of the transport interface (pure Python, slower, supported)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata
from kafka import TopicPartition as KTopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from equilibrate.errors import ServiceUnavailableError
from equilibrate.kafka.config import group_timeouts, kafka_python_security
from equilibrate.kafka.transport import OnAssign, OnRevoke, PartitionLag, Record
from equilibrate.kafka.transport import TopicPartition as TPKey
from equilibrate.ops.net import port_open
from equilibrate.settings import Settings

log = logging.getLogger(__name__)

_UNREACHABLE = (KafkaTimeoutError, KafkaConnectionError)


def _unavailable(settings: Settings, exc: Exception) -> ServiceUnavailableError:
    if settings.kafka_security_protocol.startswith("SASL") and port_open(*settings.bootstrap_host_port):
        # kafka-python reports a refused login as a lost connection: the open port tells them apart.
        return ServiceUnavailableError(
            f"Kafka broker at {settings.kafka_bootstrap_servers} accepts connections but the SASL login of user "
            f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}) did not succeed "
            f"({type(exc).__name__}): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    return ServiceUnavailableError(
        f"Kafka broker at {settings.kafka_bootstrap_servers} does not answer ({type(exc).__name__})"
    )


class KafkaPythonProducer:
    def __init__(self, settings: Settings, *, client_id: str, linger_ms: int) -> None:
        self._failed = 0
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                client_id=client_id,
                linger_ms=linger_ms,
                acks="all",
                batch_size=256 * 1024,
                max_block_ms=120_000,
                **kafka_python_security(settings),
            )
        except _UNREACHABLE as exc:
            raise _unavailable(settings, exc) from None

    @property
    def failed(self) -> int:
        return self._failed

    def _on_error(self, exc: BaseException) -> None:
        self._failed += 1
        if self._failed == 1 or self._failed % 10_000 == 0:
            log.error("delivery failed (%d so far): %s", self._failed, exc)

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._producer.send(topic, value=value, key=key).add_errback(self._on_error)

    def poll(self, timeout: float = 0.0) -> None:
        """kafka-python delivers from its own I/O thread; nothing to serve here."""

    def flush(self, timeout: float = 30.0) -> int:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            log.error("flush did not complete: %s", exc)
            return 1
        return 0

    def close(self) -> None:
        self._producer.close(timeout=10)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer, on_assign: OnAssign | None, on_revoke: OnRevoke | None) -> None:
        self._consumer = consumer
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    def on_partitions_revoked(self, revoked: Any) -> None:
        if self._on_revoke is not None:
            self._on_revoke([(tp.topic, tp.partition) for tp in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        if self._on_assign is None:
            return
        starts = self._on_assign([(tp.topic, tp.partition) for tp in assigned])
        for (topic, partition), offset in starts.items():
            if offset is not None:
                self._consumer.seek(KTopicPartition(topic, partition), offset)


class KafkaPythonConsumer:
    def __init__(self, settings: Settings, group_id: str, *, client_id: str, auto_offset_reset: str) -> None:
        poll, session, heartbeat = group_timeouts(settings)
        self.group_id = group_id
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                group_id=group_id,
                client_id=client_id,
                auto_offset_reset=auto_offset_reset,
                enable_auto_commit=False,
                max_poll_interval_ms=poll,
                session_timeout_ms=session,
                heartbeat_interval_ms=heartbeat,
                fetch_max_wait_ms=50,
                **kafka_python_security(settings),
            )
        except _UNREACHABLE as exc:
            raise _unavailable(settings, exc) from None

    def subscribe(
        self, topics: Sequence[str], on_assign: OnAssign | None = None, on_revoke: OnRevoke | None = None
    ) -> None:
        self._consumer.subscribe(list(topics), listener=_Listener(self._consumer, on_assign, on_revoke))

    def consume(self, max_records: int, timeout: float) -> list[Record]:
        """Up to `max_records`, gathered for at most `timeout` seconds: confluent's `consume` contract.

        kafka-python's `poll` returns as soon as one fetch has records, so at a trickle each call
        gave the engine a handful of events and it paid a whole batch's cost for each handful
        (0.7-0.8 of a core at 1,000 events/s). Polling again until the batch is full or the time
        is up gives it the same batches confluent does.
        """
        deadline = time.monotonic() + timeout
        out: list[Record] = []
        while True:
            left_ms = max(0, int((deadline - time.monotonic()) * 1000))
            batches = self._consumer.poll(timeout_ms=left_ms, max_records=max_records - len(out))
            for records in batches.values():
                out.extend(Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in records)
            if len(out) >= max_records or left_ms == 0:
                return out

    def commit(self, offsets: dict[TPKey, int], *, wait: bool = True) -> None:
        if offsets:
            commits = {KTopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()}
            if wait:
                self._consumer.commit(commits)
            else:
                self._consumer.commit_async(commits)

    def assignment(self) -> list[TPKey]:
        return [(tp.topic, tp.partition) for tp in self._consumer.assignment()]

    def close(self) -> None:
        self._consumer.close()


class KafkaPythonAdmin:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        try:
            self._admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
                **kafka_python_security(settings),
            )
        except _UNREACHABLE as exc:
            raise _unavailable(settings, exc) from None

    def list_topics(self) -> dict[str, int]:
        meta = self._admin.describe_topics()
        return {t["name"]: len(t["partitions"]) for t in meta if not t["name"].startswith("__")}

    def create_topics(self, names: Sequence[str], partitions: int, replication: int) -> list[str]:
        existing = self.list_topics()
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):
            self._admin.create_topics([NewTopic(n, partitions, replication) for n in missing])
        return missing

    def consumer_lag(self, groups: Sequence[str] | None = None) -> list[PartitionLag]:
        if groups is None:
            groups = sorted(g["group_id"] for g in self._admin.list_groups())
        consumer = KafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers.split(","), **kafka_python_security(self._settings)
        )
        try:
            out: list[PartitionLag] = []
            for group in groups:
                committed = self._admin.list_group_offsets(group).get(group, {})
                if not committed:
                    continue
                ends = consumer.end_offsets(list(committed))
                for tp, meta in committed.items():
                    off = meta.offset if meta.offset >= 0 else None
                    out.append(PartitionLag(group, tp.topic, tp.partition, off, ends.get(tp, 0)))
            return out
        finally:
            consumer.close()

    def close(self) -> None:
        self._admin.close()
