"""The exactly-once guarantee: Kafka effects of handlers commit atomically with offsets."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from streams.codec import AvroCodec
from streams.config import Settings
from streams.local.stack import StackInfo
from streams.publish import Publisher
from streams.schema_registry import SchemaRegistryClient
from tests.harness import PartnerServer, WorkerProc, wait_for
from tests.integration.apps.eos_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.eos_app:app"


def _committed_notifications(stack: StackInfo, topic: str, isolation: str = "read_committed") -> list[str]:
    """`caused_by` of every notification a consumer with `isolation` sees."""
    consumer = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": "eos-reader",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    codec = AvroCodec(SchemaRegistryClient(stack.registry_url))
    try:
        md = consumer.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error:
            return []
        partitions = list(md.topics[topic].partitions)
        # Read up to the end offsets of *now* (the last stable offset for read_committed),
        # so a busy topic does not keep this reading forever.
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        out: list[str] = []
        done = {p for p in partitions if ends[p] <= 0}
        idle = 0
        while len(done) < len(partitions) and idle < 3:
            batch = consumer.consume(1000, timeout=1.0)
            idle = 0 if batch else idle + 1
            for m in batch:
                if m.error() is not None:
                    continue
                if m.offset() >= ends[m.partition()] - 1:
                    done.add(m.partition())
                if m.offset() < ends[m.partition()]:
                    out.append(str(codec.decode(m.value())["caused_by"]))
        return out
    finally:
        consumer.close()


def test_sigkill_leaves_exactly_one_committed_effect_per_event(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    settings = dataclasses.replace(
        Settings.from_env(),
        workspace=unique,
        kafka_bootstrap=stack.bootstrap,
        schema_registry_url=stack.registry_url,
    )
    pub = Publisher(app, settings)
    rng = random.Random(3)
    uniques = [
        pub.envelope("orders.created", f"order-{i}", {"customer_id": f"c-{i}", "total_cents": 5})
        for i in range(1500)
    ]
    stream = uniques + [rng.choice(uniques) for _ in range(300)]
    for event in stream:
        pub.publish("orders.created", event)
    pub.flush()
    topic = f"{unique}.notifications.requested"
    state = tmp_path / "state"
    worker = WorkerProc(APP, unique, state, partner.url, tmp_path / "w1.log").wait_ready()
    # Kill while a transaction is open: its writes are visible uncommitted, not yet committed.
    wait_for(
        lambda: len(_committed_notifications(stack, topic, "read_uncommitted")) >= 100,
        120,
        "100 notifications written",
    )
    worker.kill()
    before_kill = len(_committed_notifications(stack, topic))
    assert before_kill < len(uniques), "the worker finished before it could be killed mid-stream"
    worker = WorkerProc(APP, unique, state, partner.url, tmp_path / "w2.log").wait_ready()
    try:
        wanted = {e["event_id"] for e in uniques}
        seen = wait_for(
            lambda: (lambda got: got if set(got) >= wanted else None)(_committed_notifications(stack, topic)),
            180,
            "a notification per unique order",
        )
        counts = Counter(seen)
        assert set(counts) == wanted
        twice = {k: n for k, n in counts.items() if n > 1}
        assert twice == {}, f"{len(twice)} events have more than one committed effect"
        written = len(_committed_notifications(stack, topic, "read_uncommitted"))
        print(
            f"\nexactly-once: {len(stream)} events ({len(uniques)} unique), SIGKILL mid-stream with "
            f"{before_kill} committed; {written} notifications written in all, {len(seen)} committed, "
            f"{written - len(seen)} aborted, 0 duplicates"
        )
    finally:
        worker.stop()
