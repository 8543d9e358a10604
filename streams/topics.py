"""Creating the topics an app declares (idempotently) and reading their partition counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import UnreachableError
from streams.kafka_probe import quiet_logger


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the app declares it."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    #: A topic whose partitions must match another's (retry and DLQ follow their source).
    follows: str | None = None


def admin(bootstrap: str, extra: Mapping[str, object] | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "logger": quiet_logger(), **(extra or {})})


def partition_counts(client: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UnreachableError(f"Kafka did not answer a metadata request: {exc.args[0].str()}") from None
    return {name: len(t.partitions) for name, t in metadata.topics.items() if not t.error}


def ensure(client: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> dict[str, int]:
    """Create whatever is missing; returns every declared topic's real partition count.

    A topic that `follows` another takes that topic's real partition count, so a
    retry topic is always co-partitioned with its source even if the source existed.
    """
    specs = list(specs)
    existing = partition_counts(client)
    result: dict[str, int] = {}
    for spec in sorted(specs, key=lambda s: s.follows is not None):
        partitions = result.get(spec.follows, spec.partitions) if spec.follows else spec.partitions
        if spec.name in existing:
            result[spec.name] = existing[spec.name]
            continue
        futures = client.create_topics(
            [NewTopic(spec.name, partitions, spec.replication_factor, config=dict(spec.config))],
            operation_timeout=timeout_s,
        )
        try:
            futures[spec.name].result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise UnreachableError(f"could not create topic {spec.name}: {exc.args[0].str()}") from None
        result[spec.name] = partitions
    return result
