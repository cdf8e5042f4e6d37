"""The small transport interface every component uses, whichever Kafka client is behind it.

Two implementations: `confluent_client` (default, librdkafka) and `kafka_python_client`
(pure Python), chosen by `KAFKA_CLIENT`. Components never import either client directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from equilibrate.settings import Settings

TopicPartition = tuple[str, int]
#: Called with the partitions a rebalance assigned; returns the offset to start each one at
#: (None = the group's committed offset). This is how state stores own their offsets.
OnAssign = Callable[[list[TopicPartition]], dict[TopicPartition, int | None]]
OnRevoke = Callable[[list[TopicPartition]], None]


class Record(NamedTuple):
    """One consumed message (a NamedTuple: consumers build hundreds of thousands a second)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        # Tansu reports the base offset of the last batch as the end, which can trail a committed
        # offset; never show a negative lag.
        return max(0, self.end - (self.committed or 0))


class Producer(Protocol):
    @property
    def failed(self) -> int:
        """Messages the client gave up delivering (counted, never silent)."""

    def produce(self, topic: str, value: bytes, key: bytes | None = None) -> None: ...

    def poll(self, timeout: float = 0.0) -> None: ...

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for outstanding messages; return how many are still undelivered."""

    def close(self) -> None: ...


class Consumer(Protocol):
    def subscribe(
        self, topics: Sequence[str], on_assign: OnAssign | None = None, on_revoke: OnRevoke | None = None
    ) -> None: ...

    def consume(self, max_records: int, timeout: float) -> list[Record]: ...

    def commit(self, offsets: dict[TopicPartition, int], *, wait: bool = True) -> None:
        """Commit the next offset to read for each partition (wait=False: fire and forget)."""

    def assignment(self) -> list[TopicPartition]: ...

    def close(self) -> None: ...


class Admin(Protocol):
    def create_topics(self, names: Sequence[str], partitions: int, replication: int) -> list[str]:
        """Create the missing topics; return the names actually created."""

    def list_topics(self) -> dict[str, int]:
        """Topic name -> partition count."""

    def consumer_lag(self, groups: Sequence[str] | None = None) -> list[PartitionLag]: ...

    def close(self) -> None: ...


def make_producer(settings: Settings, *, client_id: str = "equilibrate", linger_ms: int = 5) -> Producer:
    if settings.kafka_client == "kafka-python":
        from equilibrate.kafka.kafka_python_client import KafkaPythonProducer

        return KafkaPythonProducer(settings, client_id=client_id, linger_ms=linger_ms)
    from equilibrate.kafka.confluent_client import ConfluentProducer

    return ConfluentProducer(settings, client_id=client_id, linger_ms=linger_ms)


def make_consumer(
    settings: Settings, group_id: str, *, client_id: str = "equilibrate", auto_offset_reset: str = "earliest"
) -> Consumer:
    if settings.kafka_client == "kafka-python":
        from equilibrate.kafka.kafka_python_client import KafkaPythonConsumer

        return KafkaPythonConsumer(settings, group_id, client_id=client_id, auto_offset_reset=auto_offset_reset)
    from equilibrate.kafka.confluent_client import ConfluentConsumer

    return ConfluentConsumer(settings, group_id, client_id=client_id, auto_offset_reset=auto_offset_reset)


def make_admin(settings: Settings) -> Admin:
    if settings.kafka_client == "kafka-python":
        from equilibrate.kafka.kafka_python_client import KafkaPythonAdmin

        return KafkaPythonAdmin(settings)
    from equilibrate.kafka.confluent_client import ConfluentAdmin

    return ConfluentAdmin(settings)
