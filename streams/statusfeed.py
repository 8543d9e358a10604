"""Reading the status topic: decoded ProcessingStatus records, without joining any group.

Used by `streams demo` and `streams tail`. It assigns partitions directly (no group
membership, no commits), so it never moves a worker's offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from streams.codec import AvroCodec, CodecError
from streams.errors import UnreachableError
from streams.kafka_probe import quiet_logger


class StatusFeed:
    """Status events of one status topic, from the beginning or from now on."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        codec: AvroCodec,
        *,
        from_beginning: bool = False,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.topic = topic
        self.codec = codec
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "streams-statusfeed",  # required by librdkafka; never joined or committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "logger": quiet_logger(),
                **(extra or {}),
            }
        )
        try:
            metadata = self._consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise UnreachableError(f"Kafka did not answer: {exc.args[0].str()}") from None
        info = metadata.topics.get(topic)
        partitions = sorted(info.partitions) if info is not None and not info.error else []
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        if partitions:
            self._consumer.assign([TopicPartition(topic, p, start) for p in partitions])
        self.partitions = partitions
        self.skipped = 0

    def poll(self, timeout_s: float = 0.5, max_records: int = 500) -> list[dict[str, Any]]:
        """Decoded statuses that arrived within `timeout_s` (undecodable ones are counted)."""
        if not self.partitions:
            time.sleep(timeout_s)
            return []
        out = []
        for message in self._consumer.consume(max_records, timeout=timeout_s):
            value = message.value()
            if message.error() is not None or value is None:
                continue
            try:
                record = self.codec.decode(value)
            except CodecError:
                self.skipped += 1
                continue
            record["_timestamp_ms"] = message.timestamp()[1]
            out.append(record)
        return out

    def follow(self, deadline_s: float | None = None) -> Iterator[dict[str, Any]]:
        end = None if deadline_s is None else time.monotonic() + deadline_s
        while end is None or time.monotonic() < end:
            yield from self.poll()

    def close(self) -> None:
        self._consumer.close()
