"""The codec against the real schema registry: round trips, evolution, garbage, interop, CLI."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import (
    AvroCodec,
    CodecError,
    CorruptBody,
    InvalidRecord,
    NotConfluentFramed,
    SchemaMismatch,
    UnknownSchemaId,
    value_deserializer,
    value_serializer,
)
from streams.local.stack import StackInfo
from streams.schema_registry import SchemaRegistryClient
from streams.schemas import load_dir, parse

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"

ALL_TYPES: dict[str, Any] = {
    "type": "record",
    "name": "AllTypes",
    "namespace": "streams.test",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "flag", "type": "boolean"},
        {"name": "maybe", "type": ["null", "string"], "default": None},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "qty", "type": "int"},
                    ],
                },
            },
        },
    ],
}
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
RECORDS = st.fixed_dictionaries(
    {
        "s": st.text(max_size=30),
        "b": st.binary(max_size=30),
        "i": INT32,
        "l": INT64,
        "f": st.floats(width=32, allow_nan=False),
        "d": st.floats(allow_nan=False),
        "flag": st.booleans(),
        "maybe": st.none() | st.text(max_size=10),
        "color": st.sampled_from(["RED", "GREEN"]),
        "fx": st.binary(min_size=4, max_size=4),
        "id": st.uuids(),
        "at": st.datetimes(
            min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1),
            timezones=st.just(dt.UTC),
        ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
        "counts": st.dictionaries(st.text(max_size=8), INT64, max_size=4),
        "lines": st.lists(
            st.fixed_dictionaries({"sku": st.text(max_size=8), "qty": INT32}), max_size=4
        ),
    }
)  # fmt: skip

V1 = {
    "type": "record",
    "name": "Order",
    "namespace": "streams.test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "note", "type": "string", "default": ""},
    ],
}
V2 = {
    **V1,
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "long"},
        {"name": "priority", "type": "int", "default": 5},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}


@pytest.fixture(scope="module")
def registry(stack: StackInfo) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient(stack.registry_url) as client:
        yield client


@pytest.fixture(scope="module")
def codec(registry: SchemaRegistryClient) -> AvroCodec:
    return AvroCodec(registry)


@pytest.fixture(scope="module")
def all_types_frame(codec: AvroCodec) -> tuple[str, bytes]:
    subject = f"t{uuid.uuid4().hex[:10]}.all-types-value"
    record = {
        "s": "héllo", "b": b"\x00\xff", "i": -7, "l": 2**40, "f": 1.5, "d": -2.25,
        "flag": True, "maybe": None, "color": "GREEN", "fx": b"abcd", "id": uuid.uuid4(),
        "at": dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC),
        "counts": {"a": 1}, "lines": [{"sku": "A", "qty": 2}],
    }  # fmt: skip
    return subject, codec.encode(subject, record, ALL_TYPES)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=RECORDS)
def test_valid_records_round_trip_unchanged(
    codec: AvroCodec, all_types_frame: tuple[str, bytes], record: dict[str, Any]
) -> None:
    subject, _ = all_types_frame
    assert codec.decode(codec.encode(subject, record, ALL_TYPES)) == record
    assert codec.decode(codec.encode(subject, record, ALL_TYPES), parse(ALL_TYPES)) == record


def test_v1_data_read_with_v2_gets_the_defaults(codec: AvroCodec, unique: str) -> None:
    subject = f"{unique}.orders-value"
    frame = codec.encode(subject, {"id": "o-1", "qty": 3, "note": "x"}, V1)
    v2 = parse(V2)
    for _ in range(2):  # the second read uses the cached plan
        record = codec.decode(frame, v2)
        assert record == {"id": "o-1", "qty": 3, "priority": 5, "tags": []}
    record["tags"].append("mutated")
    assert codec.decode(frame, v2)["tags"] == [], "defaults are not shared between records"
    # v2 data read by a v1 consumer fails once, clearly: v1 cannot read qty as a long.
    frame2 = codec.encode(subject + "2", {"id": "o-2", "qty": 4, "priority": 1, "tags": []}, V2)
    with pytest.raises(SchemaMismatch, match="qty"):
        codec.decode(frame2, parse(V1))


def test_nested_evolution_uses_full_resolution(codec: AvroCodec, unique: str) -> None:
    old = {"type": "record", "name": "N", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "int"}}]}  # fmt: skip
    new = {"type": "record", "name": "N", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "double"}}]}  # fmt: skip
    frame = codec.encode(f"{unique}.nested-value", {"xs": [1, 2]}, old)
    assert codec.decode(frame, parse(new)) == {"xs": [1.0, 2.0]}


def test_encode_rejects_invalid_records(codec: AvroCodec, unique: str) -> None:
    with pytest.raises(InvalidRecord, match=r"streams\.test\.Order"):
        codec.encode(f"{unique}.orders-value", {"id": "o-1", "qty": "three"}, V1)


def test_garbled_values_raise_typed_errors(codec: AvroCodec, all_types_frame: tuple[str, bytes]) -> None:
    _, frame = all_types_frame
    with pytest.raises(NotConfluentFramed):
        codec.decode(b"\x01" + frame[1:])
    with pytest.raises(UnknownSchemaId, match="2147483000"):
        codec.decode(b"\x00" + (2147483000).to_bytes(4, "big") + frame[5:])
    with pytest.raises(CorruptBody, match="corrupt or truncated"):
        codec.decode(frame[:-3])
    with pytest.raises(CorruptBody, match="2 unexpected bytes"):
        codec.decode(frame + b"\x00\x00")
    with pytest.raises(CorruptBody):  # an absurd string length
        codec.decode(frame[:5] + b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f" + frame[6:])


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_frames_decode_or_raise_codec_errors(
    codec: AvroCodec, all_types_frame: tuple[str, bytes], data: st.DataObject
) -> None:
    _, frame = all_types_frame
    body = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(5, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "drop"]))
        if op == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[pos:]
        elif op == "insert":
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=9))
        elif len(body) > 6:
            del body[pos]
        if len(body) < 6:
            break
    with contextlib.suppress(CodecError):
        codec.decode(bytes(body))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=40), schema_id=st.integers(0, 2**32 - 1))
def test_random_frames_decode_or_raise_codec_errors(codec: AvroCodec, tail: bytes, schema_id: int) -> None:
    with contextlib.suppress(CodecError):
        codec.decode(b"\x00" + schema_id.to_bytes(4, "big") + tail)


class _CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_schema_ids_are_fetched_once_across_threads(
    stack: StackInfo, all_types_frame: tuple[str, bytes]
) -> None:
    _, frame = all_types_frame
    transport = _CountingTransport()
    codec = AvroCodec(SchemaRegistryClient(stack.registry_url, transport=transport))
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        for _ in range(50):
            codec.decode(frame)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum("/schemas/ids/" in p for p in transport.paths) == 1


def test_interoperates_with_confluent_kafka_serdes(stack: StackInfo, codec: AvroCodec, unique: str) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient as CflClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    topic = f"{unique}.interop"
    ctx = SerializationContext(topic, MessageField.VALUE)
    client = CflClient({"url": stack.registry_url})
    theirs = AvroSerializer(client, json.dumps(V1), conf={"auto.register.schemas": True})
    record = {"id": "o-9", "qty": 2, "note": "n"}
    assert codec.decode(theirs(record, ctx)) == record
    ours = value_serializer(codec, schema=V1)(record, ctx)
    assert ours is not None
    assert AvroDeserializer(client)(ours, ctx) == record
    assert value_deserializer(codec)(ours, ctx) == record


def test_repo_contracts_encode_and_redact(codec: AvroCodec, unique: str) -> None:
    contract = load_dir(SCHEMAS)["orders.created"]
    event = {
        "event_id": uuid.uuid4(), "entity_id": "o-1", "event_type": "orders.created",
        "occurred_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "source": "checkout",
        "workspace": "", "customer_id": "c-1", "customer_email": "a@example.com",
        "total_cents": 1999, "currency": "EUR", "item_count": 2,
    }  # fmt: skip
    frame = codec.encode(contract.subject(f"{unique}.orders.created"), event, contract.schema)
    assert codec.decode(frame, contract.schema) == event


# -- CLI -------------------------------------------------------------------------------


def _cli(*args: str, workspace: str, registry_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("STREAMS_")}
    env["STREAMS_WORKSPACE"] = workspace
    if registry_url:
        env["STREAMS_SCHEMA_REGISTRY_URL"] = registry_url
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "schemas", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_register_then_check_is_all_compatible(stack: StackInfo, unique: str) -> None:
    first = _cli("register", workspace=unique, registry_url=stack.registry_url)
    assert first.returncode == 0, first.stderr
    assert f"{unique}.orders.created-value: version 1" in first.stdout
    assert f"{unique}.streams.status-value: version 1" in first.stdout
    contracts = len(load_dir(ROOT / "schemas"))
    again = _cli("register", workspace=unique, registry_url=stack.registry_url)
    assert again.returncode == 0 and again.stdout.count("unchanged") == contracts, again.stdout
    check = _cli("check", workspace=unique, registry_url=stack.registry_url)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": compatible") == contracts
    listing = _cli("list", workspace=unique, registry_url=stack.registry_url)
    assert f"{unique}.orders.created-value" in listing.stdout and "BACKWARD" in listing.stdout


def _copy_with_priority(tmp_path: Path, default: bool) -> Path:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    path = copy / "order_created.avsc"
    raw = json.loads(path.read_text())
    field: dict[str, Any] = {"name": "priority", "type": "int"}
    if default:
        field["default"] = 0
    raw["fields"].append(field)
    path.write_text(json.dumps(raw))
    return copy


def test_cli_offline_check_names_subject_and_field(tmp_path: Path, unique: str) -> None:
    copy = _copy_with_priority(tmp_path, default=False)
    result = _cli(
        "check", "--offline", "--against", "schemas", "--schemas", str(copy),
        workspace=unique, registry_url=None,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"{unique}.orders.created-value: the new schema cannot read data written with "
        "schemas/order_created.avsc: reader field 'priority' has no default and is missing "
        "in the writer"
    ) in result.stdout
    ok = _cli(
        "check", "--offline", "--against", "schemas",
        "--schemas", str(_copy_with_priority(tmp_path / "b", default=True)),
        workspace=unique, registry_url=None,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout


def test_cli_online_check_rejects_and_explains(stack: StackInfo, tmp_path: Path, unique: str) -> None:
    assert _cli("register", workspace=unique, registry_url=stack.registry_url).returncode == 0
    copy = _copy_with_priority(tmp_path, default=False)
    result = _cli("check", "--schemas", str(copy), workspace=unique, registry_url=stack.registry_url)
    assert result.returncode == 1
    assert f"{unique}.orders.created-value: INCOMPATIBLE under BACKWARD" in result.stdout
    assert "reader field 'priority' has no default" in result.stdout


def test_cli_without_registry_url_says_what_to_set(unique: str) -> None:
    result = _cli("list", workspace=unique, registry_url=None)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "STREAMS_SCHEMA_REGISTRY_URL" in result.stderr and "streams local up" in result.stderr


def test_faust_codec_round_trips(codec: AvroCodec, unique: str) -> None:
    from streams.faust_codec import avro_codec

    faust_codec = avro_codec(codec, f"{unique}.faust-value", V1)
    record = {"id": "o-1", "qty": 1, "note": ""}
    data = faust_codec.dumps(record)
    assert data[0] == 0 and faust_codec.loads(data) == record
    assert faust_codec.clone().loads(data) == record
