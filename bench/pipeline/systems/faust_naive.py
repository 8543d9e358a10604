"""faust-naive: a plain faust-streaming agent, one event at a time, default settings.

The agent iterates `stream.events()` over the raw source topic, decodes each value with
fastavro (writer schema fetched from the registry by ID once), looks the event_id up in a
RocksDB table (`store="rocksdb://"` with the rocksdict driver, changelog managed by faust), marks new IDs
COMPLETED and awaits `status_topic.send()` of the `BenchStatus` record. Settings are
faust's defaults except what the run needs: broker, store, data dir, `topic_partitions`
(must match the source topic for the table) and `web_enabled=False` (no fixed port on a
shared machine). Run as `python -m bench.pipeline.systems.faust_naive`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust

from bench.pipeline.wire import (
    SKIPPED_DUPLICATE,
    SUCCEEDED,
    FirstRecordMarker,
    StatusEncoder,
    SystemEnv,
    WriterSchemas,
)


def build() -> faust.App:
    env = SystemEnv.from_env()
    app = faust.App(
        env.group,
        broker=f"kafka://{env.bootstrap}",
        store="rocksdb://",
        datadir=env.state_dir,
        topic_partitions=env.partitions,
        web_enabled=False,
    )
    source = app.topic(env.source_topic, key_serializer="raw", value_serializer="raw")
    status_topic = app.topic(env.status_topic, key_serializer="raw", value_serializer="raw")
    ledger = app.Table("ledger", default=None, partitions=env.partitions, options={"driver": "rocksdict"})
    schemas = WriterSchemas(env.registry_url)
    status = StatusEncoder(env.status_schema_id)
    marker = FirstRecordMarker(env.first_record_file)

    @app.agent(source)
    async def process(stream: Any) -> None:
        async for event in stream.events():
            marker.hit()
            msg = event.message
            record = schemas.decode(event.value)
            event_id = str(record["event_id"])
            if ledger.get(event_id) is not None:
                outcome = SKIPPED_DUPLICATE
            else:
                ledger[event_id] = "COMPLETED"
                outcome = SUCCEEDED
            ts = int(msg.timestamp * 1000)
            out = status.encode(event_id, record["entity_id"], outcome, msg.partition, msg.offset, ts)
            await status_topic.send(key=event.key, value=out)

    return app


def main() -> None:
    logging.getLogger("faust").setLevel(logging.WARNING)
    app = build()
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
