"""Where the runtime's own records go: status events, fast, with delivery you can await.

Under at-least-once a confluent-kafka (librdkafka) producer carries status events: it
batches in C and reports each delivery; a small thread serves its callbacks and resolves
asyncio futures, so a batch awaits "all my statuses are on the broker" cheaply. Under
exactly-once the records must join faust's transaction, so they go through faust.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from streams.errors import StreamsError
from streams.kafka_probe import quiet_logger


class DeliveryFailed(StreamsError):
    """The broker did not take a record the runtime must not lose."""


class KafkaSink:
    """An idempotent librdkafka producer whose deliveries resolve asyncio futures."""

    def __init__(self, bootstrap: str, *, acks: str = "all", extra: dict[str, Any] | None = None) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "enable.idempotence": acks == "all",
            "linger.ms": 2,
            "batch.num.messages": 10_000,
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "logger": quiet_logger(),
            **(extra or {}),
        }
        self._producer = Producer(config)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="streams-status-sink", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future[None]:
        """Queue a record; the future resolves when the broker has it (or fails)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_resolve, future, err)

        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=delivered)
                return future
            except BufferError:
                # librdkafka's queue is full: let the serving thread drain it.
                self._producer.poll(0.01)

    def close(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._producer.flush(timeout_s)


def _resolve(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryFailed(f"status not delivered: {err.str()}"))
