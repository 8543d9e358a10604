"""Generate the benchmark's order events and put them on the local broker.

- `register(registry_url, subject, schema)` registers a schema in the real registry
  (POST /subjects/{subject}/versions) and returns its global ID. Subjects carry a hash of
  the schema, so re-runs never collide with compatibility rules.
- `EventGenerator` makes Confluent-framed Avro order events keyed by entity_id, each
  value close to `size` bytes (framing included), `entities` distinct entity IDs, and an
  exact share `duplicates` of re-deliveries: a duplicate is a byte-identical copy of an
  earlier event (same event_id, same key), produced again later.
- `create_topics` makes topics with LogAppendTime timestamps (so latency is measured on
  the broker's clock for both ends); `produce_all` writes a pre-built event list.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import fastavro
import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.pipeline.wire import frame

Event = tuple[bytes, bytes]  # (key, value)


def register(registry_url: str, subject_base: str, schema: dict[str, Any]) -> tuple[str, int]:
    """Register `schema` under a content-hashed subject; return (subject, schema ID)."""
    text = json.dumps(schema, sort_keys=True)
    subject = f"{subject_base}-{hashlib.sha256(text.encode()).hexdigest()[:12]}-value"
    resp = httpx.post(
        f"{registry_url.rstrip('/')}/subjects/{subject}/versions",
        json={"schema": text},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        timeout=10.0,
    )
    resp.raise_for_status()
    return subject, int(resp.json()["id"])


def _filler(field_schema: Any) -> Any:
    """A plausible value for a field the generator does not know by name."""
    kind = field_schema if isinstance(field_schema, str) else field_schema.get("type")
    if isinstance(field_schema, list):
        return None if "null" in field_schema else _filler(field_schema[0])
    return {"string": "x", "int": 1, "long": 1, "boolean": False, "double": 1.0}.get(str(kind))


@dataclass
class EventGenerator:
    """Deterministic (seeded) source of order events; see the module docstring."""

    schema: dict[str, Any]
    schema_id: int
    size: int
    entities: int
    duplicates: float
    seed: int = 7
    _rng: random.Random = field(init=False)
    _parsed: Any = field(init=False)
    _issued: list[Event] = field(init=False, default_factory=list)
    _pad: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._parsed = fastavro.parse_schema(self.schema)
        base = len(self._encode(self._record(0), pad=0))
        # a string's length prefix grows by a byte per 64x; solve for the body length
        pad = max(0, self.size - base)
        while pad > 0 and base + pad + (len(_zigzag_varint(pad)) - 1) > self.size:
            pad -= 1
        self._pad = pad

    def _record(self, index: int) -> dict[str, Any]:
        rng = self._rng
        entity = f"order-{rng.randrange(self.entities):08d}"
        known: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "entity_id": entity,
            "event_type": "orders.created",
            "occurred_at": 1_760_000_000_000 + index,
            "source": "bench",
            "workspace": "",
            "order_id": entity,
            "customer_id": f"cust-{rng.randrange(1_000_000):07d}",
            "amount_cents": rng.randrange(100, 100_000),
            "total_cents": rng.randrange(100, 100_000),
            "currency": "EUR",
            "item_count": rng.randrange(1, 10),
            "customer_email": None,
            "padding": "",
        }
        return {
            f["name"]: known[f["name"]] if f["name"] in known else f.get("default", _filler(f))
            for f in self.schema["fields"]
        }

    def _encode(self, record: dict[str, Any], pad: int) -> bytes:
        record["padding"] = "p" * pad
        return frame(self.schema_id, self._parsed, record)

    def take(self, n: int) -> list[Event]:
        """The next `n` events; exactly round(n * duplicates) of them are re-deliveries."""
        n_dup = round(n * self.duplicates)
        candidates = range(0 if self._issued else 1, n)
        dup_positions = set(self._rng.sample(candidates, min(n_dup, len(candidates))))
        out: list[Event] = []
        for i in range(n):
            if i in dup_positions:
                out.append(self._issued[self._rng.randrange(len(self._issued))])
                continue
            record = self._record(len(self._issued))
            event = (record["entity_id"].encode(), self._encode(record, self._pad))
            self._issued.append(event)
            out.append(event)
        return out


def _zigzag_varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"}
    futures = admin.create_topics(
        [NewTopic(name, partitions, 1, config=config) for name in names], operation_timeout=30
    )
    for future in futures.values():
        future.result(timeout=60)


def delete_topics_containing(bootstrap: str, marker: str) -> list[str]:
    """Delete every topic whose name contains `marker` (the run ID); return their names."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=30).topics if marker in t]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # cleanup is best effort
                future.result(timeout=60)
    return names


def produce_all(bootstrap: str, topic: str, events: list[Event]) -> None:
    """Write `events` to `topic` as fast as the client allows (acks=all, batched)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for key, value in events:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError(f"could not write all events to {topic}")
