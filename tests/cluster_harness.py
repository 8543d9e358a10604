"""Helpers for tests against a multi-broker local cluster: a steady event stream, group lag.

The cluster itself is a `LocalStack(settings, brokers=3)` under its own state directory;
workers and the partner API come from `tests.harness`. Nothing here sleeps to synchronise:
the stream paces itself by the clock, every wait polls a condition with a deadline.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.app import App
from streams.config import Settings
from streams.publish import Publisher


class SteadyStream:
    """Publishes `count` order events at `rate_per_s` from a thread, one unique entity each."""

    def __init__(
        self, app: App, settings: Settings, count: int, rate_per_s: float, prefix: str = "order"
    ) -> None:
        self.publisher = Publisher(app, settings)
        self.count = count
        self.rate = rate_per_s
        self.prefix = prefix
        self.sent: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-stream", daemon=True)

    def start(self) -> SteadyStream:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for i in range(self.count):
                if self._stop.is_set():
                    break
                # Pace by the clock: event i is due at started + i / rate.
                delay = started + i / self.rate - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                entity = f"{self.prefix}-{i}"
                event = self.publisher.envelope(
                    "orders.created",
                    entity,
                    {"customer_id": "c-1", "customer_email": "jane@example.com", "total_cents": 100 + i},
                )
                self.publisher.publish("orders.created", event)
                self.sent.append(entity)
            # Through broker failures too: the idempotent producer retries until acked.
            self.publisher.flush(120)
        except BaseException as exc:  # reported by join()
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float = 180) -> list[str]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the event stream did not finish"
        if self.error is not None:
            raise AssertionError(f"publishing failed: {self.error}")
        return self.sent

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def wanted_keys(self) -> set[str]:
        """The partner idempotency keys of every event sent (orders: `order:<entity>`)."""
        return {f"order:{entity}" for entity in self.sent}


def cluster_settings(bootstrap: str, registry_url: str, workspace: str, replication_factor: int) -> Settings:
    return dataclasses.replace(
        Settings.from_env({}),
        kafka_bootstrap=bootstrap,
        schema_registry_url=registry_url,
        workspace=workspace,
        replication_factor=replication_factor,
    )


def group_lag_by_partition(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Records not yet committed by `group`, per "topic[partition]": end minus committed offset.

    Read with a consumer of the group that never subscribes, so it does not join it.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "client.id": f"lag-probe-{uuid.uuid4().hex[:6]}",
        }
    )
    try:
        lag: dict[str, int] = {}
        metadata = consumer.list_topics(timeout=10)
        parts: list[TopicPartition] = []
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            parts.extend(TopicPartition(topic, p) for p in meta.partitions)
        committed = consumer.committed(parts, timeout=10)
        for tp in committed:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            done = tp.offset if tp.offset >= 0 else 0
            lag[f"{tp.topic}[{tp.partition}]"] = max(0, high - done)
        return lag
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Records not yet committed by `group`, per topic."""
    lag: dict[str, int] = {}
    for key, behind in group_lag_by_partition(bootstrap, group, topics).items():
        topic = key.rsplit("[", 1)[0]
        lag[topic] = lag.get(topic, 0) + behind
    return lag


def topic_layout(bootstrap: str, topic: str) -> dict[str, Any]:
    """Replication factor, in-sync replica counts and min.insync.replicas of `topic`."""
    from confluent_kafka.admin import ConfigResource

    from streams.topics import admin as make_admin

    admin = make_admin(bootstrap)
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    config = admin.describe_configs([ConfigResource("topic", topic)])
    (future,) = config.values()
    entries = future.result(10)
    return {
        "partitions": len(meta.partitions),
        "replication_factor": min(len(p.replicas) for p in meta.partitions.values()),
        "min_isr_replicas": min(len(p.isrs) for p in meta.partitions.values()),
        "min.insync.replicas": int(entries["min.insync.replicas"].value),
        "cleanup.policy": entries["cleanup.policy"].value,
    }
