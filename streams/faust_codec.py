"""The faust-streaming plug-in: a `faust` codec backed by `streams.codec.AvroCodec`.

Owns only the adaptation to faust's `Codec` interface, so agents can receive decoded
records (`app.topic(..., value_serializer=avro_codec(...))`). It is kept out of
`streams.codec` because importing faust is slow. A runtime that must dead-letter
undecodable records should decode the raw bytes itself with `AvroCodec.decode` and
use faust's `raw` serializer instead: errors raised here surface inside faust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.serializers import codecs
from faust.types.codecs import CodecT

from streams.codec import AvroCodec
from streams.schemas import AvroSchema, parse


class ConfluentAvro(codecs.Codec):
    """Confluent-framed Avro: `dumps` encodes under `subject`, `loads` reads as `schema`."""

    def __init__(
        self,
        children: tuple[CodecT, ...] | None = None,
        *,
        codec: AvroCodec,
        subject: str,
        schema: AvroSchema | None = None,
    ) -> None:
        super().__init__(children, codec=codec, subject=subject, schema=schema)
        self.codec = codec
        self.subject = subject
        self.schema = schema

    def _loads(self, s: bytes) -> Any:
        return self.codec.decode(s, self.schema)

    def _dumps(self, s: Any) -> bytes:
        return self.codec.encode(self.subject, s, self.schema)


def avro_codec(
    codec: AvroCodec,
    subject: str,
    schema: str | Mapping[str, Any] | AvroSchema | None = None,
) -> ConfluentAvro:
    """A faust codec for one subject; `schema` is both the writer and the reader schema."""
    return ConfluentAvro(codec=codec, subject=subject, schema=parse(schema) if schema else None)
