"""Fuzzing the Confluent-frame decoder: random and mutated frames, truncated bodies, huge
lengths and wrong schema IDs. The decoder must return a record of the reader's shape or
raise a `CodecError` (`RegistryUnavailable` only for the ID the stub says is down): never
another exception, never a hang (pytest-timeout is the hang guard; the slowest example
is reported).

Budget: `STREAMS_FUZZ_EXAMPLES` examples per property; by default 1,500 (CI, about 5 s),
25,000 with `STREAMS_CHAOS_SCALE=full`.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import AvroCodec, CodecError
from streams.schema_registry import RegistryUnavailable
from streams.schemas import parse
from tests.fuzz.fuzzing import (
    ORDER,
    ORDER_ID,
    ORDER_V2,
    ORDER_V2_ID,
    SKU,
    SKU_ID,
    STATUS_ID,
    UNAVAILABLE_ID,
    StubRegistry,
    frame,
    mutate,
    zigzag,
)

EXAMPLES = int(
    os.environ.get("STREAMS_FUZZ_EXAMPLES")
    or ("25000" if os.environ.get("STREAMS_CHAOS_SCALE") == "full" else "1500")
)
FUZZ = settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), database=None)
READER = parse(ORDER)
ORDER_FIELDS = {f["name"] for f in ORDER["fields"]}


class Tally:
    """Per-property counts, printed at the end: the fuzzing figures."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.outcomes: dict[str, int] = {}
        self.slowest_s = 0.0

    def add(self, outcome: str, elapsed: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.slowest_s = max(self.slowest_s, elapsed)

    def report(self) -> None:
        total = sum(self.outcomes.values())
        print(
            f"\nfuzz {self.name}: {total} frames, 0 crashes, slowest {self.slowest_s * 1000:.1f} ms, {self.outcomes}"
        )


def _decode(codec: AvroCodec, data: bytes, tally: Tally, reader: Any = READER) -> None:
    started = time.perf_counter()
    try:
        record = codec.decode(data, reader)
    except RegistryUnavailable:
        assert data[1:5] == UNAVAILABLE_ID.to_bytes(4, "big"), "RegistryUnavailable for a reachable ID"
        outcome = "RegistryUnavailable"
    except CodecError as exc:
        outcome = type(exc).__name__
    else:  # a mutation can still be a valid record: then it must have the reader's shape
        assert isinstance(record, dict), record
        assert reader is not READER or set(record) == ORDER_FIELDS, record
        outcome = "decoded"
    tally.add(outcome, time.perf_counter() - started)


def _valid(rng: random.Random, schema_id: int = ORDER_ID) -> bytes:
    """A valid order frame with random field values (also v2 / sku writers)."""
    from io import BytesIO

    import fastavro

    if schema_id == SKU_ID:
        schema, record = SKU, _sku(rng)
    else:
        schema = ORDER_V2 if schema_id == ORDER_V2_ID else ORDER
        record = {
            "event_id": "0b7f7a0e-8c4e-4a1e-9a9e-000000000001",
            "entity_id": rng.choice(("o-1", "", "ö" * rng.randint(0, 40))),
            "event_type": "orders.created",
            "occurred_at": rng.randint(0, 2**42),  # a datetime: out-of-range ms are CorruptBody
            "source": "fuzz",
            "workspace": "",
            "customer_id": "c" * rng.randint(0, 100),
            "customer_email": rng.choice((None, "a@b.c")),
            "total_cents": rng.randint(-(2**63), 2**63 - 1),
            "currency": "EUR",
            "item_count": rng.randint(-(2**31), 2**31 - 1),
        }
        if schema_id == ORDER_V2_ID:
            record["coupon"] = rng.choice((None, "SAVE10"))
    out = BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return frame(schema_id, out.getvalue())


def _sku(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for f in SKU["fields"]:
        t = f["type"]
        name = f["name"]
        if isinstance(t, dict) and t.get("type") == "enum":
            record[name] = rng.choice(t["symbols"])
        elif isinstance(t, dict) and t.get("type") == "array":
            record[name] = ["x"] * rng.randint(0, 5)
        elif t == "long" or (isinstance(t, dict) and t.get("type") == "long"):
            record[name] = rng.randint(0, 2**40)
        elif isinstance(t, list):
            record[name] = None
        else:
            record[name] = f"v-{rng.randint(0, 99)}"
    return record


def _reader(schema_id: int) -> Any:
    """The order reader for order frames; SKU frames as written (so their arrays are read)."""
    return None if schema_id == SKU_ID else READER


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(StubRegistry())  # type: ignore[arg-type]


def test_valid_frames_round_trip(codec: AvroCodec) -> None:
    rng = random.Random(1)
    for schema_id in (ORDER_ID, ORDER_V2_ID):
        for _ in range(200):
            record = codec.decode(_valid(rng, schema_id), READER)
            assert set(record) == ORDER_FIELDS


TALLIES: dict[str, Tally] = {}


def _tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally(name))


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(codec: AvroCodec, data: bytes) -> None:
    _decode(codec, data, _tally("random bytes"))


@FUZZ
@given(
    st.sampled_from([ORDER_ID, ORDER_V2_ID, STATUS_ID, SKU_ID, UNAVAILABLE_ID, 0, 5, 2**31, 2**32 - 1]),
    st.binary(max_size=256),
)
def test_random_bodies_under_every_kind_of_schema_id(codec: AvroCodec, schema_id: int, body: bytes) -> None:
    _decode(codec, frame(schema_id, body), _tally("random body, chosen ID"))


@FUZZ
@given(st.randoms(use_true_random=False), st.sampled_from([ORDER_ID, ORDER_V2_ID, SKU_ID]), st.integers(1, 6))
def test_mutated_valid_frames(codec: AvroCodec, rng: random.Random, schema_id: int, rounds: int) -> None:
    data = _valid(rng, schema_id)
    for _ in range(rounds):
        data = mutate(data, rng)
    _decode(codec, data, _tally("mutated valid frames"), _reader(schema_id))


@FUZZ
@given(st.randoms(use_true_random=False), st.integers(0, 40))
def test_truncated_bodies(codec: AvroCodec, rng: random.Random, cut: int) -> None:
    data = _valid(rng)
    _decode(codec, data[: max(0, len(data) - 1 - cut)], _tally("truncated"))


@FUZZ
@given(
    st.sampled_from([ORDER_ID, SKU_ID]),
    st.integers(0, 3),
    st.one_of(st.integers(2**20, 2**64), st.integers(-(2**64), -1)),
    st.binary(max_size=16),
)
def test_huge_lengths_and_counts(
    codec: AvroCodec, schema_id: int, prefix_fields: int, n: int, tail: bytes
) -> None:
    """A string/bytes length or an array block count far beyond the frame, at a field boundary."""
    rng = random.Random(n)
    valid = _valid(rng, schema_id)
    # Keep the first string field(s) of a valid body, then a huge varint where the next
    # length or count is read.
    body = valid[5:]
    keep = body[: 1 + prefix_fields * 37] if prefix_fields else b""
    _decode(codec, frame(schema_id, keep + zigzag(n) + tail), _tally("huge lengths"), _reader(schema_id))


def test_zz_report() -> None:
    """Prints the figures of the properties above (run last by name)."""
    for tally in TALLIES.values():
        tally.report()
