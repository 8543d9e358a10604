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

    def try_send(self, topic: str, key: bytes, value: bytes, group: DeliveryGroup) -> bool:
        """Queue a record for `group`; False if librdkafka's queue is full (try again)."""
        group.expect()
        try:
            self._producer.produce(topic, key=key, value=value, on_delivery=group.callback)
        except BufferError:
            group.unexpect()
            return False
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self._producer.flush(timeout_s)


class DeliveryGroup:
    """Deliveries awaited together: one future and one loop wake-up for a whole batch.

    Waking the event loop once per delivered record (call_soon_threadsafe) costs more
    than the produce itself; a batch needs only "all of mine are on the broker". The
    future settles once the group is sealed (no more records) and every record is
    delivered, or at the first failure.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self._loop.create_future()
        self._lock = threading.Lock()
        self._outstanding = 0
        self._sealed = False
        self._error: KafkaError | None = None

    def expect(self) -> None:
        with self._lock:
            self._outstanding += 1

    def unexpect(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def seal(self) -> None:
        """No more records will join; settle as soon as the outstanding ones are in."""
        with self._lock:
            self._sealed = True
            done = self._outstanding == 0
        if done:
            self._settle()

    def callback(self, err: KafkaError | None, _msg: Message) -> None:
        # Runs on the sink's serving thread.
        with self._lock:
            self._outstanding -= 1
            if err is not None and self._error is None:
                self._error = err
            done = err is not None or (self._sealed and self._outstanding == 0)
        if done:
            self._loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.future.done():
            return
        with self._lock:
            error, finished = self._error, self._sealed and self._outstanding == 0
        if error is not None:
            self.future.set_exception(DeliveryFailed(f"status not delivered: {error.str()}"))
        elif finished:
            self.future.set_result(None)
