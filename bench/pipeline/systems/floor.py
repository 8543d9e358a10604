"""floor: one hand-written confluent-kafka loop doing exactly the dedup-and-status work.

What one core can do for this workload with the same libraries as the runtime: batches
of up to 500 records (`poll` blocks for the first, `consume(499, 0)` takes what is
already fetched); per record a fastavro schemaless decode with the writer schema
pre-parsed (fetched from the registry by ID once), a rocksdict `get` of the event_id
(raw mode; the current batch's pending marks are checked first); duplicates yield
SKIPPED_DUPLICATE, new IDs are marked COMPLETED in one `WriteBatch` per consumed batch
and yield SUCCEEDED; the `BenchStatus` record is produced with linger 5 ms (acks=all,
idempotent producer). Per batch: write the WriteBatch, then commit the batch's offsets
(asynchronously, in order) as soon as all its statuses are acknowledged - at-least-once
like the runtime must be, without stalling the loop on a flush.
Run as `python -m bench.pipeline.systems.floor`.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from io import BytesIO
from types import FrameType
from typing import Any

import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from bench.pipeline.wire import (
    COMPLETED,
    SKIPPED_DUPLICATE,
    SUCCEEDED,
    FirstRecordMarker,
    StatusEncoder,
    SystemEnv,
    WriterSchemas,
    schema_id_of,
)

_running = True


def _stop(_sig: int, _frame: FrameType | None) -> None:
    global _running
    _running = False


class _Batch:
    """Offsets of one consumed batch, committable once all its statuses are delivered."""

    def __init__(self, offsets: dict[tuple[str, int], int], size: int) -> None:
        self.offsets = offsets
        self.remaining = size

    def delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            raise RuntimeError(f"status not delivered: {err}")
        self.remaining -= 1


def next_batch(consumer: Consumer, size: int = 500, wait_s: float = 0.1) -> list[Any]:
    """Up to `size` records: block for the first, then take what is already fetched."""
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)]


def _commit_done(consumer: Consumer, inflight: deque[_Batch]) -> None:
    """Commit, in consumption order, the offsets of batches whose statuses are all acked."""
    offsets: dict[tuple[str, int], int] = {}
    while inflight and inflight[0].remaining == 0:
        offsets.update(inflight.popleft().offsets)
    if offsets:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
            asynchronous=True,
        )


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    env = SystemEnv.from_env()
    os.makedirs(env.state_dir, exist_ok=True)
    db = Rdict(os.path.join(env.state_dir, "ledger"), options=Options(raw_mode=True))
    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap,
            "group.id": env.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": env.bootstrap, "linger.ms": 5, "enable.idempotence": True})
    consumer.subscribe([env.source_topic])
    marker = FirstRecordMarker(env.first_record_file)
    schemas = WriterSchemas(env.registry_url)
    status = StatusEncoder(env.status_schema_id)
    reader = fastavro.schemaless_reader
    status_topic = env.status_topic
    inflight: deque[_Batch] = deque()
    while _running:
        batch = next_batch(consumer)
        producer.poll(0)
        _commit_done(consumer, inflight)
        if not batch:
            continue
        marker.hit()
        wb = WriteBatch(raw_mode=True)
        pending: set[bytes] = set()
        offsets: dict[tuple[str, int], int] = {}
        done = _Batch(offsets, len(batch))
        for msg in batch:
            if msg.error():
                done.remaining -= 1
                continue
            value: bytes = msg.value()
            record: Any = reader(BytesIO(value[5:]), schemas.get(schema_id_of(value)), None)
            event_id = str(record["event_id"])
            key = event_id.encode()
            if key in pending or db.get(key) is not None:
                outcome = SKIPPED_DUPLICATE
            else:
                pending.add(key)
                wb.put(key, COMPLETED)
                outcome = SUCCEEDED
            partition: int = msg.partition()
            offset: int = msg.offset()
            topic: str = msg.topic()
            offsets[(topic, partition)] = offset + 1
            out = status.encode(event_id, record["entity_id"], outcome, partition, offset, msg.timestamp()[1])
            while True:
                try:
                    producer.produce(status_topic, out, msg.key(), on_delivery=done.delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
        db.write(wb)
        inflight.append(done)
    producer.flush(10)
    producer.poll(0)
    _commit_done(consumer, inflight)
    consumer.close()
    db.close()


if __name__ == "__main__":
    main()
