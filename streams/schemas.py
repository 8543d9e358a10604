"""Event contracts: the `*.avsc` files in `schemas/`, their topics, subjects and secrets.

Owns
- parsing Avro schemas (JSON text or objects) with fastavro, once per distinct text;
- the topic -> schema manifest `schemas/topics.json`;
- subject naming (TopicNameStrategy: the value subject of topic `t` is `t-value`);
- fields marked sensitive (`"sensitive": true` on a field) and `redact()`.

The manifest maps each topic to its schema file and the subject's compatibility level::

    {"orders.created": {"schema": "order_created.avsc", "compatibility": "BACKWARD"}}

Keeping the topic and the compatibility level out of the `.avsc` files means changing
either never changes the registered schema text (which would create a new version).
Every `*.avsc` file in the directory must be listed, so a forgotten contract is an
error, not a silently unregistered schema.

Field paths (as returned by `sensitive_fields`) are dotted field names from the
top-level record; `[]` steps into array items and `{}` into map values, unions are
transparent: `customer_email`, `lines[].sku`, `attributes{}.token`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from streams.errors import StreamsError

MANIFEST = "topics.json"
REDACTED = "[REDACTED]"
DEFAULT_COMPATIBILITY = "BACKWARD"
LEVELS = (
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

FieldPath = tuple[str, ...]


class SchemaFileError(StreamsError):
    """A schema file or the manifest is missing, unreadable or not a valid Avro schema."""


def subject_for(topic: str) -> str:
    """The value subject of `topic` under the TopicNameStrategy."""
    return f"{topic}-value"


@dataclass(frozen=True, eq=False)
class AvroSchema:
    """One parsed Avro schema: its JSON, its compact text and fastavro's parsed form."""

    raw: Any
    text: str
    parsed: Any = field(repr=False)

    @property
    def name(self) -> str | None:
        """Full name of a named top-level type (record, enum, fixed), else None."""
        if isinstance(self.raw, dict) and "name" in self.raw:
            name = str(self.raw["name"])
            namespace = self.raw.get("namespace")
            return f"{namespace}.{name}" if namespace and "." not in name else name
        return None

    def __hash__(self) -> int:
        return hash(self.text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AvroSchema) and other.text == self.text


def canonical_text(schema: Any) -> str:
    """Compact JSON of a schema object, keeping key order (what gets registered)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=2048)
def _parse_text(text: str) -> AvroSchema:
    try:
        raw = json.loads(text)
    except ValueError:
        # A bare primitive name such as `string` is a valid schema too.
        if text.strip() in _PRIMITIVES:
            raw = text.strip()
        else:
            raise SchemaFileError(f"schema is not valid JSON: {text[:80]!r}") from None
    try:
        parsed = fastavro.parse_schema(raw)
    except Exception as exc:  # fastavro raises several types for bad schemas
        raise SchemaFileError(f"not a valid Avro schema: {exc}") from None
    return AvroSchema(raw=raw, text=canonical_text(raw), parsed=parsed)


def parse(schema: str | Mapping[str, Any] | list[Any] | AvroSchema) -> AvroSchema:
    """Parse a schema given as JSON text, a JSON object, or an `AvroSchema` (returned as is).

    Parsing is cached by text, so parsing the same schema twice is a dict lookup.
    """
    if isinstance(schema, AvroSchema):
        return schema
    if isinstance(schema, str):
        return _parse_text(schema)
    return _parse_text(canonical_text(schema))


def load_file(path: Path) -> AvroSchema:
    """Read and parse one `.avsc` file; errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaFileError(f"cannot read schema file {path}: {exc.strerror}") from None
    try:
        return parse(text)
    except SchemaFileError as exc:
        raise SchemaFileError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class Contract:
    """One topic's value contract: the schema file and the subject's compatibility level."""

    topic: str
    path: Path
    schema: AvroSchema
    compatibility: str = DEFAULT_COMPATIBILITY

    def subject(self, topic_name: str | None = None) -> str:
        """The subject, for this topic or its workspace-prefixed `topic_name`."""
        return subject_for(topic_name or self.topic)


def _manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaFileError(
            f"{path} is missing; it maps each topic to its schema file, like "
            '{"orders.created": {"schema": "order_created.avsc"}}'
        ) from None
    except (OSError, ValueError) as exc:
        raise SchemaFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SchemaFileError(f"{path} must be a JSON object mapping topic -> {{schema, ...}}")
    return data


def load_dir(directory: Path) -> dict[str, Contract]:
    """All contracts of a schemas directory, keyed by topic, in manifest order."""
    if not directory.is_dir():
        raise SchemaFileError(f"schema directory {directory} does not exist; pass --schemas DIR")
    manifest = _manifest(directory)
    contracts: dict[str, Contract] = {}
    listed: set[str] = set()
    for topic, entry in manifest.items():
        if isinstance(entry, str):
            entry = {"schema": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("schema"), str):
            raise SchemaFileError(f'{directory / MANIFEST}: entry {topic!r} needs a "schema" file name')
        level = str(entry.get("compatibility", DEFAULT_COMPATIBILITY)).upper()
        if level not in LEVELS:
            raise SchemaFileError(
                f"{directory / MANIFEST}: {topic!r} has compatibility {level!r}; "
                f"use one of {', '.join(LEVELS)}"
            )
        path = directory / entry["schema"]
        listed.add(path.name)
        contracts[topic] = Contract(topic, path, load_file(path), level)
    unlisted = sorted(p.name for p in directory.glob("*.avsc") if p.name not in listed)
    if unlisted:
        raise SchemaFileError(
            f"{', '.join(unlisted)} in {directory} not listed in {MANIFEST}; add each with its topic"
        )
    return contracts


# -- sensitive fields ----------------------------------------------------------------


def _qualify(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _walk_sensitive(
    node: Any,
    namespace: str | None,
    prefix: FieldPath,
    names: dict[str, Any],
    active: frozenset[str],
    out: set[FieldPath],
) -> None:
    if isinstance(node, str):
        full = _qualify(node, namespace)
        target = names.get(full, names.get(node))
        if target is not None and target[1] not in active:
            _walk_sensitive(target[0], target[2], prefix, names, active, out)
        return
    if isinstance(node, list):
        for branch in node:
            _walk_sensitive(branch, namespace, prefix, names, active, out)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("record", "error", "enum", "fixed") and "name" in node:
        full = _qualify(str(node["name"]), node.get("namespace", namespace))
        namespace = full.rpartition(".")[0] or None
        names.setdefault(full, (node, full, namespace))
        names.setdefault(full.rpartition(".")[2], (node, full, namespace))
        if full in active:
            return
        active = active | {full}
    if kind in ("record", "error"):
        for fld in node.get("fields", []):
            path = (*prefix, str(fld["name"]))
            if fld.get("sensitive") is True:
                out.add(path)
            _walk_sensitive(fld.get("type"), namespace, path, names, active, out)
    elif kind == "array":
        _walk_sensitive(node.get("items"), namespace, (*prefix, "[]"), names, active, out)
    elif kind == "map":
        _walk_sensitive(node.get("values"), namespace, (*prefix, "{}"), names, active, out)
    elif isinstance(kind, (dict, list)):
        _walk_sensitive(kind, namespace, prefix, names, active, out)


@functools.lru_cache(maxsize=1024)
def _sensitive_paths(schema: AvroSchema) -> frozenset[FieldPath]:
    out: set[FieldPath] = set()
    _walk_sensitive(schema.raw, None, (), {}, frozenset(), out)
    return frozenset(out)


def _path_text(path: FieldPath) -> str:
    text = ""
    for step in path:
        text += step if step in ("[]", "{}") or not text else f".{step}"
    return text


def sensitive_fields(schema: str | Mapping[str, Any] | AvroSchema) -> set[str]:
    """Paths of every field marked `"sensitive": true`, e.g. {"customer_email", "lines[].sku"}."""
    return {_path_text(p) for p in _sensitive_paths(parse(schema))}


def _redact_path(value: Any, path: FieldPath) -> Any:
    if value is None:
        return None
    if not path:
        return REDACTED
    step, rest = path[0], path[1:]
    if step == "[]":
        return [_redact_path(v, rest) for v in value] if isinstance(value, list) else value
    if not isinstance(value, dict):
        return value
    if step == "{}":
        return {k: _redact_path(v, rest) for k, v in value.items()}
    if step not in value:
        return value
    copy = dict(value)
    copy[step] = _redact_path(value[step], rest)
    return copy


def redact(record: Mapping[str, Any], schema: str | Mapping[str, Any] | AvroSchema) -> dict[str, Any]:
    """A copy of `record` with every sensitive field's value replaced by `REDACTED`.

    Null values stay null (absence is not a secret). The input is never modified.
    """
    result: Any = dict(record)
    for path in _sensitive_paths(parse(schema)):
        result = _redact_path(result, path)
    return dict(result)
