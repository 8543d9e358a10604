"""Shared pieces of the fuzz tests: an in-memory registry, valid frames, and frame mutators.

The registry stub answers `get_by_id` from a dict, so the decoder can be fuzzed for
minutes without a network; one ID always answers "unavailable" (the transient case).
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

from streams.codec import HEADER_SIZE, MAGIC
from streams.schema_registry import RegistryUnavailable, SchemaNotFound

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"

ORDER_ID, STATUS_ID, SKU_ID, ORDER_V2_ID, UNAVAILABLE_ID = 1, 2, 3, 4, 99


def _schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / name).read_text()))


ORDER = _schema("order_created.avsc")
ORDER_V2 = {
    **ORDER,
    "fields": [*ORDER["fields"], {"name": "coupon", "type": ["null", "string"], "default": None}],
}
STATUS = _schema("processing_status.avsc")
SKU = _schema("catalog_sku_changed.avsc")


class StubRegistry:
    """What `AvroCodec.decode` needs of a registry client: `url` and `get_by_id`."""

    url = "stub://registry"

    def __init__(self) -> None:
        self.texts = {
            ORDER_ID: json.dumps(ORDER),
            STATUS_ID: json.dumps(STATUS),
            SKU_ID: json.dumps(SKU),
            ORDER_V2_ID: json.dumps(ORDER_V2),
        }
        self.lookups = 0

    def get_by_id(self, schema_id: int) -> str:
        self.lookups += 1
        if schema_id == UNAVAILABLE_ID:
            raise RegistryUnavailable("stub: the registry is down for this ID")
        try:
            return self.texts[schema_id]
        except KeyError:
            raise SchemaNotFound(f"stub: no schema {schema_id}") from None


def frame(schema_id: int, body: bytes) -> bytes:
    return bytes([MAGIC]) + struct.pack(">I", schema_id) + body


def zigzag(n: int) -> bytes:
    """Avro's variable-length zig-zag long (any Python int, also past 64 bits: malformed)."""
    n = (n << 1) ^ (n >> 127) if n < 0 else n << 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random structural mutation of a frame: what a broken producer or disk would do."""
    kind = rng.randrange(9)
    buf = bytearray(data)
    if kind == 0 and buf:  # flip a bit
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and buf:  # overwrite a byte
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    elif kind == 2:  # truncate
        del buf[rng.randrange(len(buf) + 1) :]
    elif kind == 3:  # append garbage
        buf += rng.randbytes(rng.randint(1, 32))
    elif kind == 4 and len(buf) > 1:  # delete a run
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 8)]
    elif kind == 5:  # insert a huge length/count varint somewhere in the body
        i = rng.randint(min(HEADER_SIZE, len(buf)), len(buf))
        buf[i:i] = zigzag(rng.choice((1, -1)) * rng.randint(2**20, 2**80))
    elif kind == 6 and len(buf) >= HEADER_SIZE:  # another schema ID
        buf[1:HEADER_SIZE] = struct.pack(">I", rng.choice((0, ORDER_ID, STATUS_ID, SKU_ID, 7, 2**32 - 1)))
    elif kind == 7 and buf:  # wrong magic byte
        buf[0] = rng.randint(1, 255)
    else:  # swap two bytes
        if len(buf) > 1:
            i, j = rng.randrange(len(buf)), rng.randrange(len(buf))
            buf[i], buf[j] = buf[j], buf[i]
    return bytes(buf)
