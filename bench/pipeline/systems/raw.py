"""raw: confluent-kafka consume -> produce passthrough, no decoding.

The ceiling of the client and the broker on this machine: `consume(500)`, each value
produced unchanged to the status topic (same key; the source partition/offset travel in
the `bench.src` header so the harness can join for latency), linger 5 ms, offsets
auto-committed. Run by the harness as `python -m bench.pipeline.systems.raw`.
"""

from __future__ import annotations

import signal
from types import FrameType

from confluent_kafka import Consumer, Producer

from bench.pipeline.systems.floor import next_batch
from bench.pipeline.wire import RAW_SOURCE_HEADER, FirstRecordMarker, SystemEnv

_running = True


def _stop(_sig: int, _frame: FrameType | None) -> None:
    global _running
    _running = False


def main() -> None:
    signal.signal(signal.SIGTERM, _stop)
    env = SystemEnv.from_env()
    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap,
            "group.id": env.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    producer = Producer({"bootstrap.servers": env.bootstrap, "linger.ms": 5})
    consumer.subscribe([env.source_topic])
    marker = FirstRecordMarker(env.first_record_file)
    produce = producer.produce
    status_topic = env.status_topic
    while _running:
        batch = next_batch(consumer)
        if not batch:
            producer.poll(0)
            continue
        marker.hit()
        for msg in batch:
            if msg.error():
                continue
            src = f"{msg.partition()}:{msg.offset()}".encode()
            while True:
                try:
                    produce(
                        status_topic,
                        value=msg.value(),
                        key=msg.key(),
                        headers=[(RAW_SOURCE_HEADER, src)],
                    )
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
