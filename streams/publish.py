"""`Publisher`: fan-out publishing of small events, validated, keyed by entity ID.

Uses an idempotent confluent-kafka producer (acks=all, no duplicates on producer
retries) and the codec, so a record that does not match its topic's schema, or whose
encoded size exceeds the limit (default 16 KiB), is refused before it is sent.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.app import App
from streams.codec import AvroCodec
from streams.config import Settings
from streams.errors import StreamsError
from streams.kafka_probe import quiet_logger
from streams.outcomes import now_ms
from streams.security import client_config, registry_client


class PublishError(StreamsError):
    """An event was refused (invalid, oversized) or the broker did not take it."""


class EventTooLarge(PublishError):
    """Events carry IDs, not payloads: the encoded event is over the size limit."""


class Publisher:
    """Publishes events of an app's contracts to their (workspace-prefixed) topics."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        codec: AvroCodec | None = None,
        max_bytes: int | None = None,
        source: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec or AvroCodec(registry_client(settings))
        self.max_bytes = max_bytes or settings.max_event_bytes
        self.source = source or app.name
        self._errors: list[str] = []
        self._producer = Producer(
            {
                "bootstrap.servers": settings.require_kafka(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # the same partitioner as the Java client and aiokafka, so keys land alike
                "partitioner": "murmur2_random",
                "logger": quiet_logger(),
                **client_config(settings),
            }
        )

    def envelope(self, topic: str, entity_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """A complete event: the envelope fields filled in around `payload`."""
        return {
            "event_id": str(uuid.uuid4()),
            "entity_id": entity_id,
            "event_type": topic,
            "occurred_at": now_ms(),
            "source": self.source,
            "workspace": self.settings.workspace,
            **payload,
        }

    def encode(self, topic: str, event: Mapping[str, Any]) -> bytes:
        contract = self.app.contract(topic)
        name = self.settings.topic(topic)
        value = self.codec.encode(f"{name}-value", dict(event), contract.schema)
        if len(value) > self.max_bytes:
            raise EventTooLarge(
                f"event for {name} is {len(value)} bytes encoded, over the {self.max_bytes}-byte limit; "
                "publish IDs and let handlers fetch the rest (or raise STREAMS_MAX_EVENT_BYTES)"
            )
        return value

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def publish(
        self,
        topic: str,
        event: Mapping[str, Any],
        *,
        key: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Validate, encode and queue `event` on `topic`, keyed by its entity ID."""
        value = self.encode(topic, event)
        entity = key if key is not None else str(event["entity_id"])
        self._producer.produce(
            self.settings.topic(topic),
            key=entity.encode(),
            value=value,
            headers=list(headers),
            on_delivery=self._on_delivery,
        )
        self._producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued event is on the broker; raise if any was not."""
        left = self._producer.flush(timeout_s)
        if left:
            raise PublishError(f"{left} events not delivered within {timeout_s:g}s; is Kafka up?")
        if self._errors:
            errors, self._errors = self._errors, []
            raise PublishError(f"{len(errors)} events failed: {errors[0]}")

    async def publish_and_wait(self, topic: str, event: Mapping[str, Any], *, key: str | None = None) -> None:
        self.publish(topic, event, key=key)
        await asyncio.get_running_loop().run_in_executor(None, self.flush)
