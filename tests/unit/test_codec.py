"""Codec behaviour that needs no registry: framing, read plans, adapters, unreachable registry."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.codec import (
    AvroCodec,
    CodecError,
    NotConfluentFramed,
    _projection,
    peek_schema_id,
    value_deserializer,
    value_serializer,
)
from streams.schema_registry import RegistryUnavailable, SchemaRegistryClient
from streams.schemas import parse


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens here any more


@pytest.fixture
def offline_codec() -> AvroCodec:
    return AvroCodec(SchemaRegistryClient(_dead_url(), timeout_s=1.0))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "tombstone"),
        (b"", "0 bytes"),
        (b"\x00\x00\x01", "3 bytes"),
        (b"\x01\x00\x00\x00\x01\x02", "0x01"),
        (b'{"json": 1}', "0x7b"),
        ("text", "str"),
    ],
)
def test_unframed_values_are_rejected_before_any_lookup(
    offline_codec: AvroCodec, value: Any, match: str
) -> None:
    with pytest.raises(NotConfluentFramed, match=match):
        offline_codec.decode(value)


def test_peek_schema_id() -> None:
    assert peek_schema_id(b"\x00\x00\x00\x01\x02rest") == 258
    with pytest.raises(NotConfluentFramed):
        peek_schema_id(b"\x00\x00")


def test_unreachable_registry_is_transient_not_unknown_id(offline_codec: AvroCodec) -> None:
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        offline_codec.decode(b"\x00\x00\x00\x00\x07\x02")


@given(st.binary(max_size=64))
def test_random_bytes_never_escape_as_library_errors(data: bytes) -> None:
    codec = AvroCodec(SchemaRegistryClient(_dead_url(), timeout_s=0.5))
    with contextlib.suppress(CodecError, RegistryUnavailable):
        codec.decode(data)


def test_adapters_pass_tombstones_through(offline_codec: AvroCodec) -> None:
    assert value_serializer(offline_codec, "s-value", '"string"')(None, None) is None
    assert value_deserializer(offline_codec)(None, None) is None


W = {
    "type": "record",
    "name": "E",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "n", "type": "int"},
        {"name": "gone", "type": "string"},
    ],
}


def test_projection_for_top_level_changes() -> None:
    reader = {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "key", "type": "string", "aliases": ["id"]},
            {"name": "n", "type": "long"},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {
                "name": "ts",
                "type": {"type": "long", "logicalType": "timestamp-millis"},
                "default": 0,
            },
        ],
    }
    assert _projection(parse(W), parse(reader)) == (
        ("key", "id", None),
        ("n", "n", None),
        ("tags", None, []),
        ("ts", None, 0),
    )


def test_nested_changes_fall_back_to_full_resolution() -> None:
    writer = {**W, "fields": [{"name": "sub", "type": {"type": "array", "items": "int"}}]}
    reader = {**W, "fields": [{"name": "sub", "type": {"type": "array", "items": "long"}}]}
    assert _projection(parse(writer), parse(reader)) is None
