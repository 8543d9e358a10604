"""quix: a Quix Streams application doing the same dedup with its RocksDB state.

Runs in its own virtualenv (quixstreams 3.28.1 pins confluent-kafka<2.13, the project
pins 2.16.1). A `StreamingDataFrame` over the raw source topic applies one stateful
function per record: fastavro decode (writer schema fetched from the registry by ID
once), `state.get(event_id)` in the per-key RocksDB store, `state.set` for new IDs, and
returns the `BenchStatus` bytes, which `to_topic` produces to the status topic.
Application defaults except broker, consumer group, `auto_offset_reset="earliest"` and
the state dir. Run as `<quix-venv>/bin/python -m bench.pipeline.systems.quix_app`.
"""

from __future__ import annotations

from typing import Any

from quixstreams import Application, State, message_context

from bench.pipeline.wire import (
    SKIPPED_DUPLICATE,
    SUCCEEDED,
    FirstRecordMarker,
    StatusEncoder,
    SystemEnv,
    WriterSchemas,
)


def main() -> None:
    env = SystemEnv.from_env()
    app = Application(
        broker_address=env.bootstrap,
        consumer_group=env.group,
        auto_offset_reset="earliest",
        state_dir=env.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(env.source_topic, key_deserializer="bytes", value_deserializer="bytes")
    status_topic = app.topic(env.status_topic, key_serializer="bytes", value_serializer="bytes")
    schemas = WriterSchemas(env.registry_url)
    status = StatusEncoder(env.status_schema_id)
    marker = FirstRecordMarker(env.first_record_file)

    def process(value: bytes, key: Any, timestamp: int, headers: Any, state: State) -> bytes:
        marker.hit()
        record = schemas.decode(value)
        event_id = str(record["event_id"])
        if state.get(event_id) is not None:
            outcome = SKIPPED_DUPLICATE
        else:
            state.set(event_id, "COMPLETED")
            outcome = SUCCEEDED
        ctx = message_context()
        return status.encode(event_id, record["entity_id"], outcome, ctx.partition, ctx.offset, timestamp)

    sdf = app.dataframe(source)
    sdf = sdf.apply(process, stateful=True, metadata=True)
    sdf.to_topic(status_topic)
    app.run()


if __name__ == "__main__":
    main()
