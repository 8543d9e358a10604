"""Offline compatibility: Avro resolution rules and the levels built on them."""

from __future__ import annotations

from typing import Any

import pytest

from streams.compat import can_read, check, reader_problems


def rec(*fields: dict[str, Any], name: str = "R", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


PRIMS = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
PROMOTABLE = {
    ("long", "int"), ("float", "int"), ("float", "long"), ("double", "int"),
    ("double", "long"), ("double", "float"), ("bytes", "string"), ("string", "bytes"),
}  # fmt: skip


@pytest.mark.parametrize("reader", PRIMS)
@pytest.mark.parametrize("writer", PRIMS)
def test_primitive_promotions(reader: str, writer: str) -> None:
    expected = reader == writer or (reader, writer) in PROMOTABLE
    assert can_read(rec(f("x", reader)), rec(f("x", writer))) is expected


def test_missing_reader_field_needs_a_default() -> None:
    writer = rec(f("a", "int"))
    assert reader_problems(rec(f("a", "int"), f("b", "int")), writer) == [
        "reader field 'b' has no default and is missing in the writer"
    ]
    assert can_read(rec(f("a", "int"), f("b", "int", default=1)), writer)
    assert can_read(rec(), writer), "writer-only fields are skipped"


def test_reader_aliases_match_writer_fields_but_writer_aliases_do_not() -> None:
    old = rec(f("count", "int"))
    new = rec(f("total", "int", aliases=["count"]))
    assert can_read(new, old)
    assert not can_read(old, new)


def test_record_names_must_match_unless_aliased() -> None:
    assert not can_read(rec(name="B"), rec(name="A"))
    assert can_read(rec(name="B", aliases=["A"]), rec(name="A"))
    # Simple names are compared, as Avro's Java checker does.
    assert can_read(rec(name="B", namespace="x"), rec(name="B", namespace="y"))


def enum(*symbols: str, default: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"type": "enum", "name": "E", "symbols": list(symbols)}
    if default is not None:
        e["default"] = default
    return e


def test_enum_symbols_and_enum_default() -> None:
    assert can_read(enum("A", "B", "C"), enum("A", "B"))
    problems = reader_problems(rec(f("e", enum("A"))), rec(f("e", enum("A", "B", "C"))))
    assert problems == [
        "enum 'e' (E): writer symbols B, C are missing in the reader, which has no enum default"
    ]
    assert can_read(enum("A", "Z", default="Z"), enum("A", "B"))


def test_fixed_needs_same_name_and_size() -> None:
    fixed = {"type": "fixed", "name": "F", "size": 4}
    assert can_read(fixed, fixed)
    assert not can_read({**fixed, "size": 8}, fixed)
    assert not can_read({**fixed, "name": "G"}, fixed)


def test_unions() -> None:
    assert can_read(["null", "int"], "int"), "writer type found in reader union"
    assert can_read(["null", "long"], "int"), "with promotion"
    assert not can_read(["null", "string"], "int")
    assert can_read("long", ["int", "long"]), "every writer branch readable"
    assert not can_read("int", ["null", "int"])
    assert reader_problems(["null", "int"], ["null", "string"]) == [
        "at '<root>' the reader union has no branch for writer type string"
    ]


def test_arrays_and_maps_check_their_items() -> None:
    assert can_read({"type": "array", "items": "long"}, {"type": "array", "items": "int"})
    problems = reader_problems(
        rec(f("m", {"type": "map", "values": rec(f("a", "int"), f("b", "int"), name="V")})),
        rec(f("m", {"type": "map", "values": rec(f("a", "int"), name="V")})),
    )
    assert problems == ["reader field 'm{}.b' has no default and is missing in the writer"]


def test_recursive_named_types_terminate() -> None:
    node = rec(f("v", "int"), f("next", ["null", "Node"], default=None), name="Node")
    node2 = rec(
        f("v", "long"), f("next", ["null", "Node"], default=None), f("w", "int", default=0),
        name="Node",
    )  # fmt: skip
    assert can_read(node2, node)
    assert not can_read(node, node2)


def test_logical_types_and_docs_are_ignored() -> None:
    ts = rec(f("t", {"type": "long", "logicalType": "timestamp-millis"}), doc="one")
    assert can_read(rec(f("t", "long"), doc="two"), ts)


V1 = rec(f("a", "int"))
V2 = rec(f("a", "int"), f("b", "int", default=0))
V3 = rec(f("a", "int"), f("b", "int", default=0), f("c", "string"))


@pytest.mark.parametrize(
    ("level", "new", "compatible"),
    [
        ("BACKWARD", V2, True),
        ("BACKWARD", V3, False),
        ("FORWARD", V3, True),
        ("FORWARD", rec(), False),
        ("FULL", V2, True),
        ("FULL", V3, False),
        ("NONE", rec(f("a", "string")), True),
    ],
)
def test_levels(level: str, new: dict[str, Any], compatible: bool) -> None:
    assert check("s-value", new, [V1], level).compatible is compatible


def test_transitive_levels_check_every_version() -> None:
    v1 = rec(f("a", "int"))
    v2 = rec()
    v3 = rec(f("a", "string", default=""))
    assert check("s-value", v3, [v1, v2], "BACKWARD").compatible
    verdict = check("s-value", v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert not verdict.compatible
    assert verdict.reasons == (
        "s-value: the new schema cannot read data written with version 1: field 'a' changed "
        "type: the writer has int, the reader string, which cannot read it",
    )
    assert not check("s-value", v2, [v1, v1], "FORWARD_TRANSITIVE").compatible
    assert not check("s-value", v2, [v1, v1], "FULL_TRANSITIVE").compatible


def test_verdict_names_subject_direction_and_field() -> None:
    verdict = check("orders.created-value", rec(f("priority", "int")), [rec()], "FULL", labels=["v1.avsc"])
    assert not verdict.compatible
    assert verdict.reasons == (
        "orders.created-value: the new schema cannot read data written with v1.avsc: "
        "reader field 'priority' has no default and is missing in the writer",
    )
    assert str(verdict) == verdict.reasons[0]
    assert str(check("x-value", V1, [], "FULL")) == "x-value: compatible (FULL)"


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="SIDEWAYS"):
        check("s-value", V1, [V1], "SIDEWAYS")
