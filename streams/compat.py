"""Offline schema compatibility: Avro schema-resolution rules, no registry needed.

Owns the answer to "can a reader holding schema R read data written with schema W?"
and the compatibility levels built on it. The rules mirror Apache Avro's
`SchemaCompatibility` (Java, 1.12), which Apicurio Registry 2.6 and Confluent Schema
Registry both apply, so the offline verdict equals the registry's:

- records: reader fields are matched to writer fields by name, then by the reader
  field's aliases; a reader field missing in the writer needs a default; writer-only
  fields are skipped; record names must match (simple name, or a reader alias).
- promotions: int -> long/float/double, long -> float/double, float -> double,
  string <-> bytes.
- enums: a writer symbol missing in the reader needs the reader enum's `default`.
- fixed: same name and size. arrays / maps: items / values must be readable.
- unions: every writer branch must be readable by the reader; a non-union writer
  needs one readable reader branch.
- logical types and docs are ignored, as the registries do.

Levels: BACKWARD = new reads latest; FORWARD = latest reads new; FULL = both; the
`_TRANSITIVE` variants check every existing version instead of only the latest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.schemas import LEVELS, AvroSchema, parse

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS: dict[str, frozenset[str]] = {
    "long": frozenset({"int"}),
    "float": frozenset({"int", "long"}),
    "double": frozenset({"int", "long", "float"}),
    "bytes": frozenset({"string"}),
    "string": frozenset({"bytes"}),
}


# -- a resolved schema graph -----------------------------------------------------------


@dataclass(eq=False)
class _Node:
    kind: str
    full_name: str = ""
    aliases: frozenset[str] = frozenset()
    fields: list[_Field] = field(default_factory=list)
    items: _Node | None = None
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int = 0
    branches: list[_Node] = field(default_factory=list)

    @property
    def simple_name(self) -> str:
        return self.full_name.rpartition(".")[2]

    def describe(self) -> str:
        return self.full_name or self.kind


@dataclass(eq=False)
class _Field:
    name: str
    aliases: tuple[str, ...]
    node: _Node
    has_default: bool


def _qualify(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


class _Builder:
    """Turns schema JSON into a `_Node` graph with named types resolved."""

    def __init__(self) -> None:
        self.names: dict[str, _Node] = {}

    def build(self, raw: Any, namespace: str = "") -> _Node:
        if isinstance(raw, str):
            if raw in _PRIMITIVES:
                return _Node(raw)
            found = self.names.get(_qualify(raw, namespace)) or self.names.get(raw)
            if found is None:
                raise ValueError(f"unknown type {raw!r}")
            return found
        if isinstance(raw, list):
            return _Node("union", branches=[self.build(b, namespace) for b in raw])
        if not isinstance(raw, dict):
            raise ValueError(f"not a schema: {raw!r}")
        kind = raw.get("type")
        if isinstance(kind, (dict, list)):
            return self.build(kind, namespace)
        if kind in _PRIMITIVES:
            return _Node(str(kind))
        if kind == "array":
            return _Node("array", items=self.build(raw["items"], namespace))
        if kind == "map":
            return _Node("map", items=self.build(raw["values"], namespace))
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(raw, str(kind), namespace)
        if isinstance(kind, str):
            return self.build(kind, namespace)
        raise ValueError(f"not a schema: {raw!r}")

    def _named(self, raw: dict[str, Any], kind: str, namespace: str) -> _Node:
        full = _qualify(str(raw["name"]), str(raw.get("namespace") or namespace))
        space = full.rpartition(".")[0]
        aliases = frozenset(_qualify(str(a), space) for a in raw.get("aliases", []))
        node = _Node("record" if kind == "error" else kind, full, aliases)
        self.names[full] = node
        if kind == "enum":
            node.symbols = tuple(raw.get("symbols", []))
            node.enum_default = raw.get("default")
        elif kind == "fixed":
            node.size = int(raw.get("size", 0))
        else:
            for f in raw.get("fields", []):
                node.fields.append(
                    _Field(
                        str(f["name"]),
                        tuple(str(a) for a in f.get("aliases", [])),
                        self.build(f["type"], space),
                        "default" in f,
                    )
                )
        return node


def _graph(schema: AvroSchema) -> _Node:
    return _Builder().build(schema.raw)


# -- reader/writer resolution ----------------------------------------------------------


def _label(path: str) -> str:
    return path or "<root>"


class _Checker:
    """Collects every reason a reader cannot read a writer (empty list = compatible)."""

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int], tuple[str, ...]] = {}

    def compatible(self, reader: _Node, writer: _Node, path: str, out: list[str]) -> bool:
        key = (id(reader), id(writer))
        if key in self.memo:  # done, or in progress (recursive type): assume yes
            out.extend(self.memo[key])
            return not self.memo[key]
        self.memo[key] = ()
        found: list[str] = []
        self._check(reader, writer, path, found)
        self.memo[key] = tuple(found)
        out.extend(found)
        return not found

    def quietly(self, reader: _Node, writer: _Node, path: str) -> bool:
        return self.compatible(reader, writer, path, [])

    def _check(self, r: _Node, w: _Node, path: str, out: list[str]) -> None:
        if r.kind == w.kind:
            self._same_kind(r, w, path, out)
            return
        if w.kind == "union":
            for branch in w.branches:
                self.compatible(r, branch, path, out)
            return
        if r.kind == "union":
            if not any(self.quietly(b, w, path) for b in r.branches):
                out.append(
                    f"at '{_label(path)}' the reader union has no branch for writer type {w.describe()}"
                )
            return
        if w.kind in _PROMOTIONS.get(r.kind, ()):
            return
        out.append(
            f"field '{_label(path)}' changed type: the writer has {w.describe()}, "
            f"the reader {r.describe()}, which cannot read it"
        )

    def _same_kind(self, r: _Node, w: _Node, path: str, out: list[str]) -> None:
        if r.kind in _PRIMITIVES:
            return
        if r.kind in ("array", "map"):
            assert r.items is not None and w.items is not None
            step = "[]" if r.kind == "array" else "{}"
            self.compatible(r.items, w.items, path + step, out)
            return
        if r.kind == "union":
            for branch in w.branches:
                if not self.quietly(r, branch, path):
                    out.append(
                        f"at '{_label(path)}' the reader union has no branch for writer type "
                        f"{branch.describe()}"
                    )
            return
        if r.simple_name != w.simple_name and w.full_name not in r.aliases:
            out.append(
                f"at '{_label(path)}' the {r.kind} name changed from {w.full_name} to "
                f"{r.full_name} (add the old name to the reader's aliases)"
            )
        if r.kind == "fixed" and r.size != w.size:
            out.append(f"fixed '{_label(path)}' changed size from {w.size} to {r.size}")
        elif r.kind == "enum":
            missing = sorted(set(w.symbols) - set(r.symbols))
            if missing and not (r.enum_default is not None and r.enum_default in r.symbols):
                out.append(
                    f"enum '{_label(path)}' ({r.full_name}): writer symbols "
                    f"{', '.join(missing)} are missing in the reader, which has no enum default"
                )
        elif r.kind == "record":
            self._fields(r, w, path, out)

    def _fields(self, r: _Node, w: _Node, path: str, out: list[str]) -> None:
        by_name = {f.name: f for f in w.fields}
        for rf in r.fields:
            field_path = f"{path}.{rf.name}" if path else rf.name
            matches = [by_name[n] for n in (rf.name, *rf.aliases) if n in by_name]
            if len(matches) > 1:
                out.append(
                    f"reader field '{field_path}' matches several writer fields through "
                    f"its aliases: {', '.join(m.name for m in matches)}"
                )
            elif not matches:
                if not rf.has_default:
                    out.append(f"reader field '{field_path}' has no default and is missing in the writer")
            else:
                self.compatible(rf.node, matches[0].node, field_path, out)


def reader_problems(reader: Any, writer: Any) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty list: it can)."""
    r_schema, w_schema = parse(reader), parse(writer)
    out: list[str] = []
    _Checker().compatible(_graph(r_schema), _graph(w_schema), "", out)
    return out


def can_read(reader: Any, writer: Any) -> bool:
    """True if a consumer holding `reader` can decode data written with `writer`."""
    return not reader_problems(reader, writer)


# -- levels ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of one subject's check: compatible or not, and why not."""

    subject: str
    level: str
    compatible: bool
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.compatible:
            return f"{self.subject}: compatible ({self.level})"
        return "; ".join(self.reasons) or f"{self.subject}: incompatible ({self.level})"


def _label_version(labels: Sequence[str] | None, index: int, count: int) -> str:
    if labels is not None:
        return labels[index]
    return "the latest version" if index == count - 1 else f"version {index + 1}"


def check(
    subject: str,
    new: Any,
    existing: Sequence[Any],
    level: str = "BACKWARD",
    labels: Sequence[str] | None = None,
) -> Verdict:
    """Can `new` be registered under `subject`, whose versions are `existing` (oldest first)?

    `labels` optionally names each existing version in reasons (default "version N").
    Every reason starts with the subject and says which side reads which.
    """
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown compatibility level {level!r}; use one of {', '.join(LEVELS)}")
    if level == "NONE" or not existing:
        return Verdict(subject, level, True)
    indexes = range(len(existing)) if level.endswith("_TRANSITIVE") else [len(existing) - 1]
    base = level.removesuffix("_TRANSITIVE")
    reasons: list[str] = []
    for i in indexes:
        old = existing[i]
        name = _label_version(labels, i, len(existing))
        if base in ("BACKWARD", "FULL"):
            for problem in reader_problems(new, old):
                reasons.append(f"{subject}: the new schema cannot read data written with {name}: {problem}")
        if base in ("FORWARD", "FULL"):
            for problem in reader_problems(old, new):
                reasons.append(
                    f"{subject}: consumers on {name} cannot read data written with the new schema: {problem}"
                )
    return Verdict(subject, level, not reasons, tuple(reasons))
