"""Confluent wire format on fastavro: encode by subject, decode by schema ID.

Owns the bytes of every record value: magic byte 0, the writer schema's 4-byte
big-endian global ID, then the Avro binary body (no container header).

- `AvroCodec.encode(subject, record, schema)` registers (or looks up) the schema once
  per (subject, schema) and caches the 5-byte header.
- `AvroCodec.decode(data, reader)` fetches the writer schema by ID once (the registry
  client caches it), then caches a *read plan* per (writer ID, reader schema):
  * "direct": writer and reader read identically (or no reader) -> plain read;
  * "project": the reader differs only at the top level (added fields with defaults,
    dropped fields, aliased renames, int -> long) -> plain read, then a dict remap;
  * "resolve": anything else -> fastavro's schema resolution.
  An incompatible pair is detected once, by `streams.compat`, and cached as an error.

Every failure is a `CodecError` (or `RegistryUnavailable` when the registry cannot be
reached, which is transient): `NotConfluentFramed`, `UnknownSchemaId` (permanent),
`CorruptBody` (any fastavro read failure, or bytes left over after the record),
`SchemaMismatch`, `InvalidRecord` (encode), `NotRegistered` (encode without
auto-registration). A bare library exception never escapes `decode`.

`value_serializer(codec, subject, schema)` adapts the codec to confluent-kafka's
`(obj, SerializationContext) -> bytes` serializer signature; the faust plug-in lives in
`streams.faust_codec`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import fastavro
import fastavro.read

from streams.compat import reader_problems
from streams.errors import StreamsError
from streams.schema_registry import SchemaNotFound, SchemaRegistryClient
from streams.schemas import AvroSchema, SchemaFileError, parse

MAGIC = 0
HEADER_SIZE = 5
_NEGATIVE_CACHE_MAX = 10_000
_IMMUTABLE = (type(None), bool, int, float, str, bytes)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_READ_KEYS = frozenset(
    {"type", "name", "namespace", "fields", "items", "values", "symbols", "size",
     "logicalType", "precision", "scale"}
)  # fmt: skip


class CodecError(StreamsError):
    """A value could not be encoded or decoded."""


class NotConfluentFramed(CodecError):
    """The value is not Confluent-framed: empty, too short or a wrong magic byte."""


class UnknownSchemaId(CodecError):
    """The registry has no schema with the value's schema ID (permanent)."""


class CorruptBody(CodecError):
    """The Avro body is truncated, corrupt, or followed by extra bytes."""


class SchemaMismatch(CodecError):
    """The writer schema cannot be resolved to the reader schema."""


class InvalidRecord(CodecError):
    """The record does not match the schema it is encoded with."""


class NotRegistered(CodecError):
    """Encoding without auto-registration, and the schema is not registered."""


def peek_schema_id(data: bytes | bytearray | memoryview) -> int:
    """The writer schema ID of a Confluent-framed value (checks only the header)."""
    _check_frame(data)
    return int.from_bytes(data[1:HEADER_SIZE], "big")


def _check_frame(data: Any) -> None:
    if data is None:
        raise NotConfluentFramed("the record has no value (a tombstone), nothing to decode")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise NotConfluentFramed(f"value is a {type(data).__name__}, not bytes")
    if len(data) < HEADER_SIZE:
        raise NotConfluentFramed(f"value is {len(data)} bytes, shorter than the 5-byte Confluent header")
    if data[0] != MAGIC:
        raise NotConfluentFramed(f"value starts with byte {data[0]:#04x}, not the Confluent magic byte 0x00")


# -- read plans -------------------------------------------------------------------


def _read_shape(node: Any) -> Any:
    """The parts of a schema that decide how bytes decode (no docs, defaults, aliases)."""
    if isinstance(node, list):
        return [_read_shape(n) for n in node]
    if isinstance(node, dict):
        return {k: _read_shape(v) for k, v in node.items() if k in _READ_KEYS}
    return node


def _has_refs(node: Any) -> bool:
    """True if the schema refers to a named type by name (its definition is elsewhere)."""
    if isinstance(node, str):
        return node not in _PRIMITIVES
    if isinstance(node, list):
        return any(_has_refs(n) for n in node)
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "record":
            return any(_has_refs(f["type"]) for f in node.get("fields", []))
        if kind == "array":
            return _has_refs(node.get("items"))
        if kind == "map":
            return _has_refs(node.get("values"))
        if kind in ("enum", "fixed"):
            return False
        return _has_refs(kind)
    return False


def _same_shape(writer: Any, reader: Any) -> bool:
    return bool(_read_shape(writer) == _read_shape(reader))


@dataclass(frozen=True)
class _Plan:
    """How to read values of one writer ID for one reader schema."""

    writer: Any  # fastavro-parsed writer schema
    reader: Any | None  # fastavro-parsed reader schema, only for "resolve"
    # "project": (output name, writer name or None, default) per reader field
    remap: tuple[tuple[str, str | None, Any], ...] | None = None
    error: CodecError | None = None


def _defaults(reader_raw: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The values fastavro's resolution gives reader-only fields (their defaults)."""
    fields = [f for f in reader_raw["fields"] if f["name"] in names]
    reader = {**reader_raw, "fields": fields}
    empty = {"type": "record", "name": reader_raw["name"], "fields": []}
    if "namespace" in reader_raw:
        empty["namespace"] = reader_raw["namespace"]
    result: dict[str, Any] = fastavro.schemaless_reader(BytesIO(b""), empty, reader)  # type: ignore[assignment]
    return result


def _projection(writer: AvroSchema, reader: AvroSchema) -> tuple[tuple[str, str | None, Any], ...] | None:
    """A top-level field remap reading `writer` data as `reader`, or None if too complex."""
    w, r = writer.raw, reader.raw
    if not (isinstance(w, dict) and isinstance(r, dict)):
        return None
    if w.get("type") != "record" or r.get("type") != "record":
        return None
    w_fields = {f["name"]: f for f in w["fields"]}
    plan: list[tuple[str, str | None, Any]] = []
    missing: list[str] = []
    for rf in r["fields"]:
        source = next((n for n in (rf["name"], *rf.get("aliases", ())) if n in w_fields), None)
        if source is None:
            missing.append(rf["name"])
            plan.append((rf["name"], None, None))
            continue
        w_type, r_type = w_fields[source]["type"], rf["type"]
        if _has_refs(w_type) or _has_refs(r_type):
            return None
        if not (_same_shape(w_type, r_type) or (w_type == "int" and r_type == "long")):
            return None
        plan.append((rf["name"], source, None))
    if missing:
        defaults = _defaults(r, missing)
        plan = [(n, s, defaults[n] if s is None else None) for n, s, _ in plan]
    return tuple(plan)


# -- the codec -----------------------------------------------------------------------


class AvroCodec:
    """Encode and decode Confluent-framed Avro against one schema registry. Thread-safe."""

    def __init__(self, registry: SchemaRegistryClient, *, auto_register: bool = True) -> None:
        self.registry = registry
        self.auto_register = auto_register
        self._headers: dict[tuple[str, str], bytes] = {}
        self._latest: dict[str, AvroSchema] = {}
        self._plans: dict[tuple[int, str | None], _Plan] = {}
        self._unknown: dict[int, UnknownSchemaId] = {}
        self._lock = threading.Lock()

    # -- encode ----------------------------------------------------------------------
    def header(self, subject: str, schema: AvroSchema) -> bytes:
        """The 5-byte frame header of `schema` under `subject` (registering it if allowed)."""
        key = (subject, schema.text)
        header = self._headers.get(key)
        if header is None:
            if self.auto_register:
                schema_id = self.registry.register(subject, schema)
            else:
                found = self.registry.lookup(subject, schema)
                if found is None:
                    raise NotRegistered(
                        f"schema {schema.name or schema.text[:60]} is not registered under "
                        f"{subject}; run `streams schemas register`"
                    )
                schema_id = found.id
            header = bytes([MAGIC]) + schema_id.to_bytes(4, "big")
            self._headers[key] = header
        return header

    def latest_schema(self, subject: str) -> AvroSchema:
        """The latest schema of `subject`, fetched once per codec."""
        schema = self._latest.get(subject)
        if schema is None:
            schema = parse(self.registry.latest(subject).schema)
            self._latest[subject] = schema
        return schema

    def encode(
        self,
        subject: str,
        record: Any,
        schema: str | Mapping[str, Any] | AvroSchema | None = None,
    ) -> bytes:
        """Frame `record` written with `schema` (default: the subject's latest schema)."""
        avro = self.latest_schema(subject) if schema is None else parse(schema)
        out = BytesIO()
        out.write(self.header(subject, avro))
        try:
            fastavro.schemaless_writer(out, avro.parsed, record)
        except Exception as exc:  # fastavro raises ValueError, TypeError, KeyError...
            raise InvalidRecord(
                f"record does not match {avro.name or 'the schema'} for {subject}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        return out.getvalue()

    # -- decode ----------------------------------------------------------------------
    def decode(
        self,
        data: bytes | bytearray | memoryview,
        reader: AvroSchema | None = None,
    ) -> Any:
        """The record in a Confluent-framed value, read as `reader` (default: as written)."""
        if (
            not isinstance(data, (bytes, bytearray, memoryview))
            or len(data) < HEADER_SIZE
            or data[0] != MAGIC
        ):
            _check_frame(data)
        schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
        plan = self._plans.get((schema_id, reader.text if reader is not None else None))
        if plan is None:
            plan = self._plan(schema_id, reader)
        if plan.error is not None:
            raise plan.error
        stream = BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            record: Any = fastavro.schemaless_reader(stream, plan.writer, plan.reader)
        except fastavro.read.SchemaResolutionError as exc:
            raise SchemaMismatch(f"schema ID {schema_id}: {exc}") from None
        except Exception as exc:  # EOFError, IndexError, UnicodeDecodeError, MemoryError...
            raise CorruptBody(
                f"Avro body for schema ID {schema_id} is corrupt or truncated "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        if stream.tell() != len(data):
            raise CorruptBody(
                f"{len(data) - stream.tell()} unexpected bytes after the record (schema ID {schema_id})"
            )
        remap = plan.remap
        if remap is None:
            return record
        return {
            name: record[source]
            if source is not None
            else (default if isinstance(default, _IMMUTABLE) else copy.deepcopy(default))
            for name, source, default in remap
        }

    def writer_schema(self, schema_id: int) -> AvroSchema:
        """The writer schema with this ID (registry-cached)."""
        unknown = self._unknown.get(schema_id)
        if unknown is not None:
            raise unknown
        try:
            text = self.registry.get_by_id(schema_id)
        except SchemaNotFound:
            error = UnknownSchemaId(f"schema ID {schema_id} is not in the registry at {self.registry.url}")
            with self._lock:
                if len(self._unknown) < _NEGATIVE_CACHE_MAX:
                    self._unknown[schema_id] = error
            raise error from None
        try:
            return parse(text)
        except SchemaFileError as exc:
            raise SchemaMismatch(f"schema ID {schema_id} is not a readable Avro schema: {exc}") from None

    def _plan(self, schema_id: int, reader: AvroSchema | None) -> _Plan:
        writer = self.writer_schema(schema_id)
        plan: _Plan
        if reader is None or _same_shape(writer.raw, reader.raw):
            plan = _Plan(writer.parsed, None)
        else:
            problems = reader_problems(reader, writer)
            if problems:
                error = SchemaMismatch(
                    f"reader {reader.name} cannot read data written with schema ID "
                    f"{schema_id}: {'; '.join(problems)}"
                )
                plan = _Plan(writer.parsed, None, error=error)
            else:
                remap = _projection(writer, reader)
                if remap is not None:
                    plan = _Plan(writer.parsed, None, remap=remap)
                else:
                    plan = _Plan(writer.parsed, reader.parsed)
        with self._lock:
            self._plans[(schema_id, reader.text if reader is not None else None)] = plan
        return plan


# -- confluent-kafka adapter ---------------------------------------------------------------


def value_serializer(
    codec: AvroCodec,
    subject: str | None = None,
    schema: str | Mapping[str, Any] | AvroSchema | None = None,
) -> Callable[[Any, Any], bytes | None]:
    """A confluent-kafka value serializer `(obj, SerializationContext) -> bytes`.

    The subject defaults to `<ctx.topic>-value` (TopicNameStrategy). `None` stays
    `None` (a tombstone).
    """
    avro = parse(schema) if schema is not None else None

    def serialize(obj: Any, ctx: Any = None) -> bytes | None:
        if obj is None:
            return None
        name = subject or f"{ctx.topic}-value"
        return codec.encode(name, obj, avro)

    return serialize


def value_deserializer(
    codec: AvroCodec, reader: str | Mapping[str, Any] | AvroSchema | None = None
) -> Callable[[bytes | None, Any], Any]:
    """A confluent-kafka value deserializer `(bytes, SerializationContext) -> record`."""
    avro = parse(reader) if reader is not None else None

    def deserialize(data: bytes | None, ctx: Any = None) -> Any:
        if data is None:
            return None
        return codec.decode(data, avro)

    return deserialize
