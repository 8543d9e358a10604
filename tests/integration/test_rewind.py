"""Seek-to-committed on a partition nobody has committed: against the real broker.

Faust drops fetched records it cannot hand on (a rebalance, stopped flow) and seeks to
the committed offsets to read them again. aiokafka leaves a partition without a commit
where it is; `rewind_to_committed` takes it back to its beginning, so those records
are read again rather than lost.
"""

from __future__ import annotations

import asyncio

import aiokafka
import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.faust_transport import rewind_to_committed
from streams.local.stack import StackInfo

pytestmark = pytest.mark.integration


def _topic_with(bootstrap: str, topic: str, count: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(30) == 0


async def _read(consumer: aiokafka.AIOKafkaConsumer, tp: TopicPartition, count: int) -> list[int]:
    values: list[int] = []
    while len(values) < count:
        batch = await asyncio.wait_for(consumer.getmany(tp, timeout_ms=1000), 30)
        values.extend(int(record.value) for record in batch.get(tp, []))
    return values


async def _scenario(bootstrap: str, topic: str, group: str) -> dict[str, object]:
    tp = TopicPartition(topic, 0)
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        first = await _read(consumer, tp, 6)
        # What faust relies on, unpatched: no commit, so the position stays past the records.
        await consumer.seek_to_committed()
        plain_position = await consumer.position(tp)
        starts = await rewind_to_committed(consumer)
        # Set at once, not "awaiting reset": faust's livelock check reads it right away.
        state = consumer._subscription.subscription.assignment.state_value(tp)
        position_set_at_once = state.has_valid_position
        rewound_position = await consumer.position(tp)
        again = await _read(consumer, tp, 6)
        # With a commit, the rewind goes to the commit, not the beginning.
        await consumer.commit({tp: OffsetAndMetadata(4, "")})
        await rewind_to_committed(consumer)
        after_commit = await _read(consumer, tp, 2)
        # A kept topic (faust's changelogs) keeps its position.
        kept = await _kept_position(bootstrap, tp, group + "-kept")
        return {
            "first": first,
            "plain_position": plain_position,
            "start": starts[tp],
            "rewound_position": rewound_position,
            "position_set_at_once": position_set_at_once,
            "again": again,
            "after_commit": after_commit,
            "kept": kept,
        }
    finally:
        await consumer.stop()


async def _kept_position(bootstrap: str, tp: TopicPartition, group: str) -> int:
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await _read(consumer, tp, 6)
        await rewind_to_committed(consumer, keep_topics={tp.topic})
        position: int = await consumer.position(tp)
        return position
    finally:
        await consumer.stop()


def test_a_partition_without_a_commit_is_read_again_from_its_beginning(stack: StackInfo, unique: str) -> None:
    topic = f"{unique}.rewind"
    _topic_with(stack.bootstrap, topic, 6)
    seen = asyncio.run(_scenario(stack.bootstrap, topic, f"{unique}.group"))
    assert seen["first"] == [0, 1, 2, 3, 4, 5]
    assert seen["plain_position"] == 6, "aiokafka's own seek_to_committed leaves the position"
    assert seen["start"] == 0, "reported as where the partition reads from now"
    assert seen["rewound_position"] == 0
    assert seen["position_set_at_once"] is True
    assert seen["again"] == [0, 1, 2, 3, 4, 5]
    assert seen["after_commit"] == [4, 5]
    assert seen["kept"] == 6
