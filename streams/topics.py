"""The topics an app declares: creating them idempotently, describing them, spotting drift.

`ensure` creates what is missing (the worker calls it on start); `declared` adds what
config says about each topic (partitions, replication factor, `min.insync.replicas`,
compaction for changelogs and replay markers, retention for the rest) plus the ledger
changelogs faust would otherwise create with its own defaults; `describe` compares the
cluster with the declaration, for `streams topics describe`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from streams.errors import UnreachableError
from streams.kafka_probe import quiet_logger

if TYPE_CHECKING:
    from streams.app import App
    from streams.config import Settings

#: The compacted topic recording which dead letters `streams dlq replay` has replayed.
REPLAYED_SUFFIX = ".dlq.replayed"


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
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": quiet_logger(), **(extra or {})}
    return AdminClient(config)


def partition_counts(client: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UnreachableError(
            f"Kafka did not answer a metadata request within {timeout_s:g}s ({exc.args[0].str()}); "
            "check STREAMS_KAFKA_BOOTSTRAP or run `streams local up`"
        ) from None
    return {name: len(t.partitions) for name, t in metadata.topics.items() if not t.error}


def ensure(client: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> dict[str, int]:
    """Create whatever is missing; returns every declared topic's real partition count.

    A topic that `follows` another takes that topic's real partition count, so a
    retry topic is always co-partitioned with its source even if the source existed.
    """
    return {name: n for name, (n, _) in _ensure(client, specs, timeout_s).items()}


def _ensure(client: AdminClient, specs: Iterable[TopicSpec], timeout_s: float) -> dict[str, tuple[int, bool]]:
    """name -> (partitions, created now)."""
    specs = list(specs)
    existing = partition_counts(client)
    result: dict[str, tuple[int, bool]] = {}
    for spec in sorted(specs, key=lambda s: s.follows is not None):
        partitions = _expected_partitions(spec, {k: v[0] for k, v in result.items()})
        if spec.name in existing:
            result[spec.name] = (existing[spec.name], False)
            continue
        futures = client.create_topics(
            [NewTopic(spec.name, partitions, spec.replication_factor, config=dict(spec.config))],
            operation_timeout=timeout_s,
        )
        created = True
        try:
            futures[spec.name].result(timeout_s)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise UnreachableError(f"could not create topic {spec.name}: {exc.args[0].str()}") from None
            created = False
        result[spec.name] = (partitions, created)
    _await_metadata(client, {name: n for name, (n, created) in result.items() if created}, timeout_s)
    return result


def _await_metadata(client: AdminClient, topics: Mapping[str, int], timeout_s: float) -> None:
    """Wait until the brokers' metadata shows every topic just created, with its partitions.

    A create returns once the controller has the topic; a broker's metadata follows a
    little later. A worker joining its group in between gets no partitions of it (the
    assignor sees no such topic) and sits idle until its next metadata refresh, up to 5
    minutes later: seen as an idle benchmark worker right after `streams local up`.
    """
    deadline = time.monotonic() + timeout_s
    while topics:
        known = partition_counts(client)
        missing = sorted(name for name, n in topics.items() if known.get(name, 0) < n)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise UnreachableError(
                f"topics created but not in Kafka's metadata after {timeout_s:g}s: {', '.join(missing)}; "
                "check the brokers' health (`streams local status`)"
            )
        time.sleep(0.1)


def _expected_partitions(spec: TopicSpec, real: Mapping[str, int]) -> int:
    return real.get(spec.follows, spec.partitions) if spec.follows else spec.partitions


def declared(app: App, settings: Settings) -> list[TopicSpec]:
    """Every topic of `app` with its config: the app's topics, ledger changelogs, replay markers."""
    rf = settings.replication_factor
    isr = str(settings.effective_min_insync_replicas)
    deleting = {
        "cleanup.policy": "delete",
        "retention.ms": str(settings.retention_ms),
        "min.insync.replicas": isr,
    }
    compacted = {"cleanup.policy": "compact", "min.insync.replicas": isr}
    specs = {s.name: dataclasses.replace(s, config={**deleting, **s.config}) for s in app.topics(settings)}
    app_id = settings.topic(app.name)
    for handler in app.handlers:
        source = settings.topic(handler.topic)
        # faust's name for a table's changelog: <app id>-<table name>-changelog; the ledger
        # table is co-partitioned with its source topic.
        changelog = f"{app_id}-{handler.name}-ledger-changelog"
        specs.setdefault(changelog, TopicSpec(changelog, settings.partitions, rf, compacted, follows=source))
        marker = source + REPLAYED_SUFFIX
        specs.setdefault(marker, TopicSpec(marker, 1, rf, compacted))
    return list(specs.values())


def create(client: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 30.0) -> dict[str, bool]:
    """Create the missing ones; name -> True if created now, False if it existed."""
    return {name: created for name, (_, created) in _ensure(client, specs, timeout_s).items()}


@dataclass
class TopicState:
    """One declared topic as the cluster has it, and how that differs from the declaration."""

    spec: TopicSpec
    exists: bool
    partitions: int | None = None
    replication_factor: int | None = None
    config: dict[str, str] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)


def describe(client: AdminClient, specs: Iterable[TopicSpec], timeout_s: float = 10.0) -> list[TopicState]:
    """The cluster's view of each declared topic, with its drift from the declaration."""
    specs = list(specs)
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UnreachableError(
            f"Kafka did not answer a metadata request within {timeout_s:g}s ({exc.args[0].str()}); "
            "check STREAMS_KAFKA_BOOTSTRAP or run `streams local up`"
        ) from None
    topics = {name: t for name, t in metadata.topics.items() if not t.error}
    real = {name: len(t.partitions) for name, t in topics.items()}
    present = [s.name for s in specs if s.name in topics]
    configs: dict[str, dict[str, str]] = {}
    if present:
        futures = client.describe_configs(
            [ConfigResource(ResourceType.TOPIC, name) for name in present], request_timeout=timeout_s
        )
        for resource, future in futures.items():
            try:
                entries = future.result(timeout_s)
            except KafkaException as exc:
                raise UnreachableError(
                    f"could not read the config of topic {resource.name}: {exc.args[0].str()}"
                ) from None
            configs[resource.name] = {k: str(v.value) for k, v in entries.items()}
    states = []
    for spec in specs:
        meta = topics.get(spec.name)
        if meta is None:
            states.append(TopicState(spec, exists=False, drift=["missing; run `streams topics create`"]))
            continue
        partitions = len(meta.partitions)
        first = meta.partitions.get(0) or next(iter(meta.partitions.values()))
        rf = len(first.replicas)
        state = TopicState(spec, True, partitions, rf, configs.get(spec.name, {}))
        expected = _expected_partitions(spec, real)
        if partitions != expected:
            why = f" (as {spec.follows})" if spec.follows else ""
            state.drift.append(f"partitions {partitions}, declared {expected}{why}")
        if rf != spec.replication_factor:
            state.drift.append(f"replication factor {rf}, declared {spec.replication_factor}")
        for key, value in sorted(spec.config.items()):
            actual = state.config.get(key)
            if actual != value:
                state.drift.append(f"{key} {actual}, declared {value}")
        states.append(state)
    return states
