"""Codec throughput: streams.codec vs confluent-kafka's Avro serdes vs the `avro` package.

Runs against the real registry in STREAMS_SCHEMA_REGISTRY_URL (default: the local
stack's) on the same OrderCreated records, and prints records/s and our ratio to
each baseline. Usage: `python -m bench codec [--records N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _registry_url() -> str:
    url = os.environ.get("STREAMS_SCHEMA_REGISTRY_URL")
    if url:
        return url
    from streams.config import Settings
    from streams.local.stack import LocalStack

    info = LocalStack(Settings.from_env()).info()
    if info is None:
        raise SystemExit("no registry: run `streams local up` or set STREAMS_SCHEMA_REGISTRY_URL")
    return info.registry_url


def _records(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(7)
    base = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        {
            "event_id": str(uuid.UUID(int=rnd.getrandbits(128))),
            "entity_id": f"order-{i}",
            "event_type": "orders.created",
            "occurred_at": base + dt.timedelta(milliseconds=rnd.randrange(10**9)),
            "source": "checkout",
            "workspace": "",
            "customer_id": f"cust-{rnd.randrange(10**6)}",
            "customer_email": f"user{i}@example.com" if i % 3 else None,
            "total_cents": rnd.randrange(100, 10**6),
            "currency": "EUR",
            "item_count": rnd.randrange(1, 20),
        }
        for i in range(n)
    ]


def _rate(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> float:
    for item in items[:200]:  # warm caches (schema fetches, plans)
        fn(item)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench codec", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    import avro.io
    import avro.schema
    from confluent_kafka.schema_registry import SchemaRegistryClient as CflClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from streams.codec import AvroCodec
    from streams.schema_registry import SchemaRegistryClient
    from streams.schemas import load_dir, parse

    url = _registry_url()
    contract = load_dir(ROOT / "schemas")["orders.created"]
    schema = contract.schema
    v2_raw = json.loads(schema.text)
    v2_raw["fields"].append({"name": "priority", "type": "int", "default": 0})
    v2 = parse(v2_raw)
    topic = f"bench{uuid.uuid4().hex[:8]}.orders.created"
    subject = f"{topic}-value"
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = _records(args.records)

    ours = AvroCodec(SchemaRegistryClient(url))
    cfl = CflClient({"url": url})
    cfl_ser = AvroSerializer(cfl, schema.text, conf={"auto.register.schemas": True})
    cfl_de = AvroDeserializer(cfl)
    cfl_de_v2 = AvroDeserializer(cfl, v2.text)
    frames = [ours.encode(subject, r, schema) for r in records]

    avro_schema = avro.schema.parse(schema.text)
    avro_v2 = avro.schema.parse(v2.text)
    avro_reader = avro.io.DatumReader(avro_schema)
    avro_reader_v2 = avro.io.DatumReader(avro_schema, avro_v2)
    avro_writer = avro.io.DatumWriter(avro_schema)
    header = frames[0][:5]

    def avro_decode(frame: bytes, reader: Any = avro_reader) -> Any:
        return reader.read(avro.io.BinaryDecoder(io.BytesIO(frame[5:])))

    def avro_encode(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(header)
        avro_writer.write(record, avro.io.BinaryEncoder(out))
        return out.getvalue()

    # Same output, so the comparison is fair.
    assert ours.decode(frames[1]) == cfl_de(frames[1], ctx)
    assert ours.decode(frames[1], v2) == cfl_de_v2(frames[1], ctx)

    r = args.rounds
    decode = {
        "streams (as written)": _rate(ours.decode, frames, r),
        "streams (reader = writer)": _rate(lambda f: ours.decode(f, schema), frames, r),
        "streams (v1 data, v2 reader)": _rate(lambda f: ours.decode(f, v2), frames, r),
        "confluent AvroDeserializer": _rate(lambda f: cfl_de(f, ctx), frames, r),
        "confluent AvroDeserializer (v2 reader)": _rate(lambda f: cfl_de_v2(f, ctx), frames, r),
        "avro DatumReader": _rate(avro_decode, frames, r),
        "avro DatumReader (v2 reader)": _rate(lambda f: avro_decode(f, avro_reader_v2), frames, r),
    }
    encode = {
        "streams": _rate(lambda rec: ours.encode(subject, rec, schema), records, r),
        "confluent AvroSerializer": _rate(lambda rec: cfl_ser(rec, ctx), records, r),
        "avro DatumWriter": _rate(avro_encode, records, r),
    }
    print(f"registry {url}; {len(records)} OrderCreated records, best of {r} rounds\n")
    _table("decode", decode, {
        "streams (as written)": ["confluent AvroDeserializer", "avro DatumReader"],
        "streams (v1 data, v2 reader)": [
            "confluent AvroDeserializer (v2 reader)", "avro DatumReader (v2 reader)"
        ],
    })  # fmt: skip
    _table("encode", encode, {"streams": ["confluent AvroSerializer", "avro DatumWriter"]})
    return 0


def _table(title: str, rates: dict[str, float], ratios: dict[str, list[str]]) -> None:
    print(f"{title}:")
    for name, rate in rates.items():
        print(f"  {name:<40} {rate:>12,.0f} records/s")
    for ours, baselines in ratios.items():
        for baseline in baselines:
            print(f"  ratio {ours} / {baseline}: {rates[ours] / rates[baseline]:.2f}x")
    print()
