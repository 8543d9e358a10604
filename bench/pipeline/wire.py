"""Shared bits of the pipeline benchmark that run inside the system subprocesses.

Only the standard library and fastavro are imported here, because this module is also
loaded by the Quix Streams subprocess, which runs in its own virtualenv (quixstreams pins
an older confluent-kafka than the project).

- The order schema: `schemas/order_created.avsc` when it exists, with a `padding` string
  field (default "") appended so events can reach the configured size; otherwise a
  bench-local schema with the fields of the issue.
- The baseline status record `BenchStatus` (event_id, entity_id, outcome, source
  partition/offset, source timestamp), Confluent-framed like everything else.
- `SystemEnv`: the environment contract between the harness and every system process.
- `WriterSchemas`: writer schema by Confluent ID, fetched from the registry once (urllib).
"""

from __future__ import annotations

import json
import os
import struct
import time
import urllib.request
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import fastavro

REPO_ROOT = Path(__file__).resolve().parents[2]
ORDER_SCHEMA_FILE = REPO_ROOT / "schemas" / "order_created.avsc"
HEADER = struct.Struct(">bI")
SUCCEEDED = "SUCCEEDED"
SKIPPED_DUPLICATE = "SKIPPED_DUPLICATE"
COMPLETED = b"COMPLETED"
RAW_SOURCE_HEADER = "bench.src"

BENCH_ORDER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "BenchOrderEvent",
    "namespace": "bench",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "entity_id", "type": "string"},
        {"name": "event_type", "type": "string"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "source", "type": "string"},
        {"name": "workspace", "type": "string"},
        {"name": "order_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "amount_cents", "type": "long"},
        {"name": "currency", "type": "string"},
        {"name": "padding", "type": "string", "default": ""},
    ],
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "BenchStatus",
    "namespace": "bench",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "entity_id", "type": "string"},
        {"name": "outcome", "type": "string"},
        {"name": "source_partition", "type": "int"},
        {"name": "source_offset", "type": "long"},
        {"name": "source_ts", "type": "long"},
    ],
}


def order_schema() -> tuple[dict[str, Any], str]:
    """The order writer schema and where it came from ("schemas/..." or "bench")."""
    if ORDER_SCHEMA_FILE.exists():
        schema = json.loads(ORDER_SCHEMA_FILE.read_text())
        if not any(f["name"] == "padding" for f in schema["fields"]):
            schema["fields"].append(
                {"name": "padding", "type": "string", "default": "", "doc": "bench filler"}
            )
        return schema, "schemas/order_created.avsc + padding"
    return dict(BENCH_ORDER_SCHEMA), "bench"


def frame(schema_id: int, parsed: Any, record: dict[str, Any]) -> bytes:
    """Confluent wire format: magic 0, 4-byte schema ID, Avro binary body."""
    buf = BytesIO()
    buf.write(HEADER.pack(0, schema_id))
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def schema_id_of(value: bytes) -> int:
    magic, schema_id = HEADER.unpack_from(value)
    if magic != 0:
        raise ValueError("not Confluent-framed")
    return int(schema_id)


class WriterSchemas:
    """Parsed writer schemas by Confluent schema ID, each fetched from the registry once."""

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url.rstrip("/")
        self._by_id: dict[int, Any] = {}

    def get(self, schema_id: int) -> Any:
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            url = f"{self.registry_url}/schemas/ids/{schema_id}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
            parsed = fastavro.parse_schema(json.loads(body["schema"]))
            self._by_id[schema_id] = parsed
        return parsed

    def decode(self, value: bytes) -> dict[str, Any]:
        parsed = self.get(schema_id_of(value))
        record: Any = fastavro.schemaless_reader(BytesIO(value[5:]), parsed, None)
        return dict(record)


@dataclass(frozen=True)
class SystemEnv:
    """What the harness passes to a system process, as environment variables.

    STREAMS_KAFKA_BOOTSTRAP, STREAMS_SCHEMA_REGISTRY_URL, STREAMS_STATE_DIR,
    BENCH_SOURCE_TOPIC, BENCH_STATUS_TOPIC, BENCH_GROUP, BENCH_PARTITIONS,
    BENCH_STATUS_SCHEMA_ID (ID of `BenchStatus` in the registry, for the baselines),
    BENCH_FIRST_RECORD_FILE (the system writes "<epoch ms> [<own CPU seconds>]" of its
    first consumed record there, once; optional for a system).
    """

    bootstrap: str
    registry_url: str
    state_dir: str
    source_topic: str
    status_topic: str
    group: str
    partitions: int
    status_schema_id: int
    first_record_file: str

    @classmethod
    def from_env(cls) -> SystemEnv:
        env = os.environ
        return cls(
            bootstrap=env["STREAMS_KAFKA_BOOTSTRAP"],
            registry_url=env["STREAMS_SCHEMA_REGISTRY_URL"],
            state_dir=env["STREAMS_STATE_DIR"],
            source_topic=env["BENCH_SOURCE_TOPIC"],
            status_topic=env["BENCH_STATUS_TOPIC"],
            group=env["BENCH_GROUP"],
            partitions=int(env.get("BENCH_PARTITIONS", "1")),
            status_schema_id=int(env.get("BENCH_STATUS_SCHEMA_ID", "0")),
            first_record_file=env.get("BENCH_FIRST_RECORD_FILE", ""),
        )

    def to_env(self) -> dict[str, str]:
        return {
            "STREAMS_KAFKA_BOOTSTRAP": self.bootstrap,
            "STREAMS_SCHEMA_REGISTRY_URL": self.registry_url,
            "STREAMS_STATE_DIR": self.state_dir,
            "BENCH_SOURCE_TOPIC": self.source_topic,
            "BENCH_STATUS_TOPIC": self.status_topic,
            "BENCH_GROUP": self.group,
            "BENCH_PARTITIONS": str(self.partitions),
            "BENCH_STATUS_SCHEMA_ID": str(self.status_schema_id),
            "BENCH_FIRST_RECORD_FILE": self.first_record_file,
        }


class FirstRecordMarker:
    """Writes "<epoch ms> <own CPU s>" at the first consumed record, once.

    The CPU seconds are the process's own (os.times), so the harness's CPU window starts
    exactly at the first record even when the harness itself is slow to notice.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = not path

    def hit(self) -> None:
        if self.done:
            return
        self.done = True
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            t = os.times()
            cpu = t.user + t.system + t.children_user + t.children_system
            fh.write(f"{time.time() * 1000.0:.3f} {cpu:.3f}\n")
        os.replace(tmp, self.path)


class StatusEncoder:
    """Encodes `BenchStatus` records, Confluent-framed with the registered ID."""

    def __init__(self, schema_id: int) -> None:
        self.header = HEADER.pack(0, schema_id)
        self.parsed = fastavro.parse_schema(STATUS_SCHEMA)

    def encode(
        self,
        event_id: str,
        entity_id: str,
        outcome: str,
        partition: int,
        offset: int,
        source_ts: int,
    ) -> bytes:
        buf = BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(
            buf,
            self.parsed,
            {
                "event_id": event_id,
                "entity_id": entity_id,
                "outcome": outcome,
                "source_partition": partition,
                "source_offset": offset,
                "source_ts": source_ts,
            },
        )
        return buf.getvalue()
