"""faust-batch / faust-batch-rocksdict: the best the faust stack itself allows, for reference.

Not one of the issue's baselines: a diagnostic that prices the layers `streams` stands
on. The same dedup-and-status work as floor, written directly on faust-streaming the
way the runtime consumes: an agent over the raw source topic iterating
`stream.take_events(500, 0.05)`; per record a fastavro decode (writer schema fetched by
ID once) and a ledger lookup of the event_id; new IDs marked COMPLETED; every
`BenchStatus` produced through confluent-kafka (the runtime's `KafkaSink`, acks=all,
idempotent), and the batch's deliveries awaited before faust acks its records.

- `faust-batch` keeps the ledger in a faust Table (`rocksdb://` with the rocksdict
  driver, one changelog record per write), as the runtime does;
- `faust-batch-rocksdict` (BENCH_FAUST_LEDGER=rocksdict) keeps it in one rocksdict DB
  written with one WriteBatch per batch and no changelog, like floor: the difference
  between the two is the price of faust's Table and its changelog.

So streams - faust-batch is what the runtime adds per record on top of faust's own
consume and table machinery. Run as `python -m bench.pipeline.systems.faust_batch`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import faust
from faust.worker import Worker
from rocksdict import Options, Rdict, WriteBatch

from bench.pipeline.wire import (
    COMPLETED,
    SKIPPED_DUPLICATE,
    SUCCEEDED,
    FirstRecordMarker,
    StatusEncoder,
    SystemEnv,
    WriterSchemas,
)
from streams.ledger import as_current
from streams.sinks import DeliveryGroup, KafkaSink


def build() -> faust.App:
    env = SystemEnv.from_env()
    use_table = os.environ.get("BENCH_FAUST_LEDGER", "table") == "table"
    app = faust.App(
        env.group,
        broker=f"kafka://{env.bootstrap}",
        store="rocksdb://",
        datadir=env.state_dir,
        topic_partitions=env.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(
        env.source_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    table = app.Table(
        "ledger", partitions=env.partitions, key_type=bytes, value_type=bytes, options={"driver": "rocksdict"}
    )
    db = None if use_table else Rdict(os.path.join(env.state_dir, "ledger"), options=Options(raw_mode=True))
    schemas = WriterSchemas(env.registry_url)
    status = StatusEncoder(env.status_schema_id)
    marker = FirstRecordMarker(env.first_record_file)
    holder: dict[str, KafkaSink] = {}

    @app.agent(source)
    async def process(stream: Any) -> None:
        sink = holder.get("sink") or holder.setdefault("sink", KafkaSink(env.bootstrap))
        async for events in stream.take_events(500, 0.05):
            marker.hit()
            group = DeliveryGroup()
            wb = WriteBatch(raw_mode=True) if db is not None else None
            pending: set[bytes] = set()
            for event in events:
                msg = event.message
                record = schemas.decode(msg.value)
                event_id = str(record["event_id"])
                key = event_id.encode()
                if db is not None and wb is not None:
                    duplicate = key in pending or db.get(key) is not None
                    if not duplicate:
                        pending.add(key)
                        wb.put(key, COMPLETED)
                else:
                    with as_current(event):
                        duplicate = table.get(key) is not None
                        if not duplicate:
                            table[key] = COMPLETED
                outcome = SKIPPED_DUPLICATE if duplicate else SUCCEEDED
                ts = int(msg.timestamp * 1000)
                out = status.encode(event_id, record["entity_id"], outcome, msg.partition, msg.offset, ts)
                while not sink.try_send(env.status_topic, msg.key, out, group):
                    await asyncio.sleep(0.005)  # librdkafka's queue is full: let it drain
            if db is not None and wb is not None:
                db.write(wb)
            group.seal()
            await group.future

    return app


class _Worker(Worker):
    """No terminal spinner, so the root logger stays at WARN (see streams.worker)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None


def main() -> None:
    _Worker(build(), loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
