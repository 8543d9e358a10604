"""Dead letters of a source topic: reading them, selecting some, replaying them exactly once.

A dead letter is a record on `<source>.dlq`: the original key and value bytes, error
metadata in `streams-*` headers. Replaying one produces its key and value back to the
source topic (same partition as the original) with a `streams-replayed-from` header
naming the dead letter, and *in the same Kafka transaction* a marker keyed
`<partition>:<offset>` on the compacted topic `<source>.dlq.replayed`. Either both are
committed or neither, so a run that is interrupted (SIGINT, crash) and re-run skips
exactly what was replayed and replays the rest once. The transactional id is fixed per
DLQ, so a new run fences a stale one and aborts its open transaction before reading
the markers (read_committed).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.errors import ConfigError, StreamsError, UnreachableError
from streams.kafka_probe import quiet_logger
from streams.outcomes import (
    H_ATTEMPT,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_HANDLER,
    H_ORIGIN_OFFSET,
    H_ORIGIN_PARTITION,
    H_ORIGIN_TOPIC,
    H_REASON,
    H_REPLAY,
    now_ms,
)
from streams.topics import REPLAYED_SUFFIX, TopicSpec, admin, ensure

READ_TIMEOUT_S = 30.0


class ReplayError(StreamsError):
    """A replay could not be committed (the broker refused or timed out)."""


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def coordinates(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str, default: str = "") -> str:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return default

    @property
    def error_class(self) -> str:
        return self.header(H_ERROR_CLASS, "unknown")

    @property
    def origin_partition(self) -> int:
        try:
            return int(self.header(H_ORIGIN_PARTITION, str(self.partition)))
        except ValueError:
            return self.partition

    def summary(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "handler": self.header(H_HANDLER) or None,
            "error_class": self.error_class,
            "error_message": self.header(H_ERROR_MESSAGE) or None,
            "reason": self.header(H_REASON) or None,
            "attempt": self.header(H_ATTEMPT) or None,
            "origin": f"{self.header(H_ORIGIN_TOPIC)}/{self.header(H_ORIGIN_PARTITION)}/{self.header(H_ORIGIN_OFFSET)}",
            "headers": {k: v.decode(errors="replace") for k, v in self.headers},
        }


def _consumer(
    bootstrap: str, *, committed_only: bool = False, extra: Mapping[str, Any] | None = None
) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # Needed by librdkafka for assign(); a fresh id that is never joined or committed.
            "group.id": f"streams-dlq-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "socket.timeout.ms": 10_000,
            "logger": quiet_logger(),
            **(extra or {}),
        }
    )


def _read_to_end(
    bootstrap: str,
    topic: str,
    *,
    committed_only: bool = False,
    timeout_s: float = READ_TIMEOUT_S,
    extra: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Every message of `topic` from the beginning to its end (as of now); [] if it does not exist."""
    consumer = _consumer(bootstrap, committed_only=committed_only, extra=extra)
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise UnreachableError(f"Kafka did not answer: {exc.args[0].str()}") from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return []
        waiting = set(info.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in waiting])
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise UnreachableError(
                    f"could not read {topic} to its end within {timeout_s:g}s; is Kafka healthy?"
                )
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(message.partition())
                    continue
                out.append(message)
        return out
    finally:
        consumer.close()


def read(bootstrap: str, dlq_topic: str, *, extra: Mapping[str, Any] | None = None) -> list[DeadLetter]:
    """Every dead letter on `dlq_topic`, in partition and offset order (`extra`: client security)."""
    letters = [
        DeadLetter(
            topic=dlq_topic,
            partition=int(m.partition()),
            offset=int(m.offset()),
            timestamp_ms=int(m.timestamp()[1]),
            key=m.key(),
            value=m.value(),
            headers=tuple((k, v if isinstance(v, bytes) else b"") for k, v in (m.headers() or [])),
        )
        for m in _read_to_end(bootstrap, dlq_topic, extra=extra)
    ]
    return sorted(letters, key=lambda d: (d.partition, d.offset))


def replayed(
    bootstrap: str, marker_topic: str, *, extra: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """`<partition>:<offset>` -> marker, for every dead letter a committed replay covered."""
    markers: dict[str, dict[str, Any]] = {}
    for message in _read_to_end(bootstrap, marker_topic, committed_only=True, extra=extra):
        key = (message.key() or b"").decode(errors="replace")
        try:
            markers[key] = json.loads(message.value() or b"{}")
        except ValueError:
            markers[key] = {}
    return markers


def select(
    letters: Iterable[DeadLetter],
    *,
    offsets: Sequence[tuple[int, int]] = (),
    error_classes: Sequence[str] = (),
    since_ms: int | None = None,
) -> list[DeadLetter]:
    """The dead letters matching every given filter (an error class matches by full or short name)."""
    wanted = set(offsets)
    out = []
    for d in letters:
        if wanted and (d.partition, d.offset) not in wanted:
            continue
        if error_classes and not any(
            d.error_class == c or d.error_class.rsplit(".", 1)[-1] == c for c in error_classes
        ):
            continue
        if since_ms is not None and d.timestamp_ms < since_ms:
            continue
        out.append(d)
    return out


def replay_headers(d: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    """The replayed record's headers: no failure metadata (it is a fresh delivery), plus where it came from."""
    kept: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in d.headers if not k.startswith("streams-")
    ]
    return [*kept, (H_REPLAY, f"{d.topic}/{d.partition}/{d.offset}".encode())]


class Replayer:
    """Replays dead letters of one DLQ to its source topic, each exactly once."""

    def __init__(
        self,
        bootstrap: str,
        source_topic: str,
        *,
        replication_factor: int = 1,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.extra = dict(extra or {})
        self.source = source_topic
        self.dlq = source_topic + ".dlq"
        self.markers = source_topic + REPLAYED_SUFFIX
        ensure(
            admin(bootstrap, self.extra),
            [
                TopicSpec(
                    self.markers,
                    1,
                    replication_factor,
                    {"cleanup.policy": "compact", "min.insync.replicas": "1"},
                )
            ],
        )
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                # Fixed per DLQ: a new run fences an interrupted one and aborts its open transaction.
                "transactional.id": f"streams-dlq-replay-{self.dlq}",
                "enable.idempotence": True,
                "acks": "all",
                "transaction.timeout.ms": 60_000,
                "logger": quiet_logger(),
                **self.extra,
            }
        )
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise ReplayError(f"could not start a replay transaction: {exc.args[0].str()}") from None
        self._open = False

    def already_replayed(self) -> dict[str, dict[str, Any]]:
        return replayed(self.bootstrap, self.markers, extra=self.extra)

    def replay(
        self,
        letters: Sequence[DeadLetter],
        *,
        batch: int = 100,
        rate: float | None = None,
        on_replayed: Callable[[DeadLetter], None] | None = None,
    ) -> int:
        """Replay `letters` in transactions of up to `batch` (1 when rate-limited); the count done."""
        done = 0
        step = 1 if rate else max(1, batch)
        for start in range(0, len(letters), step):
            chunk = letters[start : start + step]
            self._producer.begin_transaction()
            self._open = True
            for d in chunk:
                self._producer.produce(
                    self.source,
                    key=d.key,
                    value=d.value,
                    partition=d.origin_partition,
                    headers=replay_headers(d),
                )
                marker = {"replayed_at_ms": now_ms(), "to": self.source, "error_class": d.error_class}
                self._producer.produce(
                    self.markers, key=d.coordinates.encode(), value=json.dumps(marker).encode()
                )
            try:
                self._producer.commit_transaction(30)
            except KafkaException as exc:
                self.abort()
                raise ReplayError(
                    f"replay of {len(chunk)} dead letters was not committed ({exc.args[0].str()}); "
                    "nothing of it is visible; re-run to try again"
                ) from None
            self._open = False
            done += len(chunk)
            for d in chunk:
                if on_replayed is not None:
                    on_replayed(d)
            if rate:
                time.sleep(1.0 / rate)
        return done

    def abort(self) -> None:
        """Abort an open transaction (on interrupt); the next run's fencing would do it anyway."""
        if self._open:
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(10)
            self._open = False


def check_dlq_exists(bootstrap: str, dlq_topic: str, *, extra: Mapping[str, Any] | None = None) -> None:
    consumer = _consumer(bootstrap, extra=extra)
    try:
        metadata = consumer.list_topics(dlq_topic, timeout=10)
    except KafkaException as exc:
        raise UnreachableError(f"Kafka did not answer: {exc.args[0].str()}") from None
    finally:
        consumer.close()
    info = metadata.topics.get(dlq_topic)
    if info is None or info.error is not None or not info.partitions:
        raise ConfigError(
            f"dead-letter topic {dlq_topic} does not exist; check the source topic and --workspace "
            "(or run `streams topics create`)"
        )
