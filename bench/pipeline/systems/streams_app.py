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
                                 or "unsafe" (acks=1, outcomes not awaited before the
                                 offsets are acked, so faust's periodic commit runs
                                 ahead of them: auto-commit in effect)
    BENCH_STREAMS_TUNING         optional JSON object, for `--variant` systems only:
                                 faust settings applied to the app before the worker
                                 starts, plus "producer_buffer_max_messages" (faust's
                                 changelog ProducerBuffer, 100 by default) and
                                 "faust_spinner": true (faust's own Worker, as before
                                 streams.worker dropped its spinner) and
                                 "take_within_s" (the longest a batch waits to fill,
                                 STREAMS_BATCH_WINDOW_MS in the runtime, 10 ms by
                                 default), "fetch_max_wait_ms" (aiokafka's
                                 fetch long-poll: 50 in streams, 1500 in faust's driver)

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
import gc
import json
import os
import warnings
from typing import Any

from bench.pipeline.wire import FirstRecordMarker
from streams import App, EventContext, Handlers
from streams.config import Settings
from streams.local.processes import free_port
from streams.runtime import Runtime
from streams.worker import build_runtime, make_worker


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
    tuning = json.loads(env.get("BENCH_STREAMS_TUNING") or "{}")
    spinner = bool(tuning.pop("faust_spinner", False))
    apply_tuning(runtime, tuning)
    worker = make_worker(runtime, "warning")
    if spinner:
        from faust.worker import Worker

        worker = Worker(runtime.faust, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def apply_tuning(runtime: Runtime, tuning: dict[str, Any]) -> None:
    """Late faust settings (a bench experiment: the runtime sets them at construction)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # faust warns about settings changed after creation
        for key, value in tuning.items():
            if key == "producer_buffer_max_messages":
                runtime.faust.producer.buffer.max_messages = int(value)
            elif key == "take_within_s":
                _take_within(float(value))
            elif key == "fetch_max_wait_ms":
                _fetch_max_wait(int(value))
            elif key == "gc_freeze":
                if value:
                    gc.freeze()  # everything built so far leaves the collector's generations
            else:
                setattr(runtime.faust.conf, key, value)


def _take_within(within_s: float) -> None:
    """Make every `take_events` batch wait at most `within_s` (the runtime passes
    `STREAMS_BATCH_WINDOW_MS`)."""
    from faust.streams import Stream

    original = Stream.take_events

    def take_events(self: Any, max_: int, within: float) -> Any:
        return original(self, max_, within_s)

    Stream.take_events = take_events  # type: ignore[method-assign,assignment]


def _fetch_max_wait(ms: int) -> None:
    """Let the worker consumer's fetch requests wait up to `ms` for data (streams sets 50
    in streams.faust_transport; faust's driver alone 1500)."""
    from streams import faust_transport

    faust_transport.FETCH_MAX_WAIT_MS = ms


if __name__ == "__main__":
    main()
