"""streams / streams-unsafe: our runtime, with a no-op handler, under the harness.

Contract (what the harness launches, pinned with `taskset -c 1`, cwd = repo root):

    python -m bench.pipeline.systems.streams_app

with the environment of `bench.pipeline.wire.SystemEnv`:

    STREAMS_KAFKA_BOOTSTRAP      broker, host:port
    STREAMS_SCHEMA_REGISTRY_URL  Confluent-compatible registry URL
    STREAMS_STATE_DIR            empty per-run directory for RocksDB state
    BENCH_SOURCE_TOPIC           Confluent-framed Avro order events, key = entity_id
    BENCH_STATUS_TOPIC           write one status event per consumed record here
    BENCH_GROUP                  fresh consumer group; start from the earliest offset
    BENCH_PARTITIONS             partitions of the source (and status) topic
    BENCH_FIRST_RECORD_FILE      write the epoch ms (float text) of the first consumed
                                 record there once (optional: else the first status
                                 event's timestamp starts the clock)
    BENCH_STREAMS_MODE           "safe" (acks=all, commit after the outcome is durable)
                                 or "unsafe" (acks=1, enable.auto.commit)

The status value must be Confluent-framed Avro with `source_partition` and
`source_offset` fields (the runtime's ProcessingStatus has them), so the harness can
join it with the source record for latency. Run until SIGTERM; the harness stops the
process by PID once the status topic holds every status.

It is the real thing: `streams.worker.build_runtime` with one handler on the source
topic (contract `orders.created`, idempotency key event_id, its RocksDB ledger), the
status topic set by STREAMS_STATUS_TOPIC, durability by STREAMS_DURABILITY.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from bench.pipeline.wire import FirstRecordMarker
from streams import App, EventContext, Handlers
from streams.config import Settings
from streams.local.processes import free_port
from streams.worker import build_runtime


def main() -> None:
    env = os.environ
    marker = FirstRecordMarker(env.get("BENCH_FIRST_RECORD_FILE", ""))
    handlers = Handlers()

    @handlers.event(env["BENCH_SOURCE_TOPIC"], name="bench", schema="orders.created")
    async def noop(event: dict[str, Any], ctx: EventContext) -> None:
        """Does nothing: the benchmark prices the framework, not a side effect."""
        marker.hit()

    mode = env.get("BENCH_STREAMS_MODE", "safe")
    settings = dataclasses.replace(
        Settings.from_env(),
        status_topic=env["BENCH_STATUS_TOPIC"],
        durability="safe" if mode == "safe" else "unsafe",
        partitions=int(env.get("BENCH_PARTITIONS", "1")),
        web_port=free_port(),
        workspace="",
    )
    app = App(env["BENCH_GROUP"], handlers)
    runtime = build_runtime(app, settings)
    from faust.worker import Worker

    logging.getLogger("streams").setLevel(logging.WARNING)
    Worker(runtime.faust, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
