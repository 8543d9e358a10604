"""streams / streams-unsafe: the hook for our runtime (not implemented yet).

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
process by PID once the status topic holds every status. Until implemented, this exits
with code 3, which the harness reports as "not implemented" and skips.
"""

from __future__ import annotations

import sys

NOT_IMPLEMENTED = 3


def main() -> None:
    print("streams runtime benchmark hook not implemented yet", file=sys.stderr)
    raise SystemExit(NOT_IMPLEMENTED)


if __name__ == "__main__":
    main()
