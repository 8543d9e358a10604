"""Offline compatibility verdicts equal the real registry's on the evolution matrix."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.compat import check
from streams.local.stack import StackInfo
from streams.schema_registry import IncompatibleSchema, SchemaRegistryClient

pytestmark = pytest.mark.integration

V1: dict[str, Any] = {
    "type": "record",
    "name": "Evolving",
    "namespace": "streams.test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "note", "type": "string", "default": ""},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {
            "name": "level",
            "type": {"type": "enum", "name": "Level", "symbols": ["LOW", "HIGH"], "default": "LOW"},
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
    ],
}


def _evolve(change: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    schema = copy.deepcopy(V1)
    change(schema["fields"])
    return schema


def _field(fields: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(f for f in fields if f["name"] == name)


def _remove(name: str) -> Callable[[list[dict[str, Any]]], None]:
    def change(fields: list[dict[str, Any]]) -> None:
        fields.remove(_field(fields, name))

    return change


def _set_type(name: str, new_type: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(fields: list[dict[str, Any]]) -> None:
        _field(fields, name)["type"] = new_type

    return change


def _rename(fields: list[dict[str, Any]]) -> None:
    f = _field(fields, "count")
    f["name"], f["aliases"] = "total", ["count"]


def _rename_with_default(fields: list[dict[str, Any]]) -> None:
    _rename(fields)
    _field(fields, "total")["default"] = 0


def _narrow_to_int(fields: list[dict[str, Any]]) -> None:
    _field(fields, "count")["type"] = "int"


# case -> (v2, expected verdict under BACKWARD, FORWARD, FULL)
CASES: dict[str, tuple[dict[str, Any], tuple[bool, bool, bool]]] = {
    "add_field_with_default": (
        _evolve(lambda f: f.append({"name": "priority", "type": "int", "default": 0})),
        (True, True, True),
    ),
    "add_field_without_default": (
        _evolve(lambda f: f.append({"name": "priority", "type": "int"})),
        (False, True, False),
    ),
    "remove_field_with_default": (_evolve(_remove("note")), (True, True, True)),
    "remove_field_without_default": (_evolve(_remove("count")), (True, False, False)),
    "rename_with_alias": (_evolve(_rename), (True, False, False)),
    # Writer aliases are not used: a v1 consumer cannot find `count` in v2 data.
    "rename_with_alias_and_default": (_evolve(_rename_with_default), (True, False, False)),
    "promote_int_to_long": (_evolve(_set_type("count", "long")), (True, False, False)),
    "promote_int_to_double": (_evolve(_set_type("count", "double")), (True, False, False)),
    "string_to_bytes": (_evolve(_set_type("id", "bytes")), (True, True, True)),
    "add_enum_symbol_without_enum_default": (
        _evolve(_set_type("kind", {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]})),
        (True, False, False),
    ),
    "add_enum_symbol_with_enum_default": (
        _evolve(
            _set_type(
                "level",
                {
                    "type": "enum",
                    "name": "Level",
                    "symbols": ["LOW", "HIGH", "MID"],
                    "default": "LOW",
                },
            )
        ),
        (True, True, True),
    ),
    "remove_enum_symbol": (
        _evolve(_set_type("kind", {"type": "enum", "name": "Kind", "symbols": ["A"]})),
        (False, True, False),
    ),
    "make_nullable": (_evolve(_set_type("count", ["null", "int"])), (True, False, False)),
    "change_array_items_incompatibly": (
        _evolve(_set_type("tags", {"type": "array", "items": "int"})),
        (False, False, False),
    ),
    "change_type_incompatibly": (_evolve(_set_type("count", "string")), (False, False, False)),
    "rename_record_without_alias": (
        {**copy.deepcopy(V1), "name": "Renamed"},
        (False, False, False),
    ),
}
LEVELS = ("BACKWARD", "FORWARD", "FULL")


@pytest.fixture(scope="module")
def registry(stack: StackInfo) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient(stack.registry_url) as client:
        yield client


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_offline_verdict_equals_registry(
    registry: SchemaRegistryClient, unique: str, case: str, level: str
) -> None:
    v2, expected = CASES[case]
    subject = f"{unique}.{case}-value"
    registry.register(subject, V1)
    registry.set_compatibility(subject, level)

    remote = registry.would_accept(subject, v2)
    offline = check(subject, v2, [V1], level)

    assert offline.compatible == remote.compatible, (
        f"{case} under {level}: registry says {remote}, offline says {offline}"
    )
    assert offline.compatible == expected[LEVELS.index(level)], str(offline)
    if not offline.compatible:
        assert offline.reasons and all(r.startswith(subject + ": ") for r in offline.reasons)


def test_reason_names_subject_and_field(unique: str) -> None:
    v2, _ = CASES["add_field_without_default"]
    verdict = check("orders.created-value", v2, [V1], "BACKWARD")
    assert not verdict.compatible
    assert verdict.reasons == (
        "orders.created-value: the new schema cannot read data written with the latest "
        "version: reader field 'priority' has no default and is missing in the writer",
    )


def test_transitive_levels_check_every_version(registry: SchemaRegistryClient, unique: str) -> None:
    # v1 -> v2 drops `count` (default-less) -> v3 re-adds it as string: v3 reads v2 but not v1.
    v2 = CASES["remove_field_without_default"][0]
    v3 = _evolve(_set_type("count", "string"))
    v3["fields"][1]["default"] = ""
    for level in ("BACKWARD", "BACKWARD_TRANSITIVE"):
        subject = f"{unique}.{level.lower()}-value"
        registry.register(subject, V1)
        registry.register(subject, v2)
        registry.set_compatibility(subject, level)
        remote = registry.would_accept(subject, v3)
        offline = check(subject, v3, [V1, v2], level)
        assert offline.compatible == remote.compatible, (level, remote, offline)
        assert offline.compatible == (level == "BACKWARD")
        # Registering applies the same rule.
        if offline.compatible:
            registry.register(subject, v3)
        else:
            with pytest.raises(IncompatibleSchema):
                registry.register(subject, v3)
