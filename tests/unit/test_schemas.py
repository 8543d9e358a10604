"""The contracts in schemas/: manifest, envelope, subjects, sensitive fields, redaction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streams.schemas import (
    REDACTED,
    SchemaFileError,
    load_dir,
    parse,
    redact,
    sensitive_fields,
    subject_for,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE = {
    "event_id": {"type": "string", "logicalType": "uuid"},
    "entity_id": "string",
    "event_type": "string",
    "occurred_at": {"type": "long", "logicalType": "timestamp-millis"},
    "source": "string",
    "workspace": "string",
}


def test_manifest_maps_every_topic_to_its_schema() -> None:
    contracts = load_dir(SCHEMAS)
    assert {t: c.schema.name for t, c in contracts.items()} == {
        "orders.created": "streams.events.OrderCreated",
        "catalog.sku_changed": "streams.events.CatalogSkuChanged",
        "imports.requested": "streams.events.ImportRequested",
        "notifications.requested": "streams.events.NotificationRequested",
        "streams.status": "streams.status.ProcessingStatus",
        "streams.dead_letters": "streams.status.DeadLetter",
    }
    assert contracts["orders.created"].subject() == "orders.created-value"
    assert contracts["orders.created"].subject("ws.orders.created") == "ws.orders.created-value"
    assert subject_for("x.y") == "x.y-value"


@pytest.mark.parametrize("topic", sorted(load_dir(SCHEMAS)))
def test_every_event_carries_the_envelope_and_docs(topic: str) -> None:
    raw = load_dir(SCHEMAS)[topic].schema.raw
    assert raw["doc"] and raw["namespace"].startswith("streams.")
    fields = {f["name"]: f for f in raw["fields"]}
    for name, expected in ENVELOPE.items():
        assert fields[name]["type"] == expected, (topic, name)
    assert fields["workspace"]["default"] == ""
    assert all(f.get("doc") for f in raw["fields"]), "every field is documented"


def test_processing_status_contract() -> None:
    raw = load_dir(SCHEMAS)["streams.status"].schema.raw
    fields = {f["name"]: f for f in raw["fields"]}
    for name in (
        "status_id", "event_id", "entity_id", "handler", "idempotency_key", "outcome",
        "attempt", "error_class", "error_message", "source_topic", "source_partition",
        "source_offset", "received_at", "started_at", "finished_at", "duration_ms",
        "workspace", "duplicate_of",
    ):  # fmt: skip
        assert name in fields, name
    assert fields["outcome"]["type"]["symbols"][:5] == [
        "SUCCEEDED", "SKIPPED_DUPLICATE", "RETRYING", "FAILED", "DEAD_LETTERED",
    ]  # fmt: skip
    for nullable in ("error_class", "error_message", "duplicate_of"):
        assert fields[nullable]["type"] == ["null", "string"]
        assert fields[nullable]["default"] is None


def test_sensitive_fields_are_marked() -> None:
    contracts = load_dir(SCHEMAS)
    assert sensitive_fields(contracts["orders.created"].schema) == {"customer_email"}
    assert sensitive_fields(contracts["imports.requested"].schema) == {"file_url"}
    assert sensitive_fields(contracts["streams.status"].schema) == set()


NESTED = {
    "type": "record",
    "name": "Outer",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "token", "type": ["null", "string"], "default": None, "sensitive": True},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "secret", "type": "string", "sensitive": True},
                    ],
                },
            },
        },
        {"name": "by_key", "type": {"type": "map", "values": "Line"}},
        {"name": "maybe", "type": ["null", "Line"], "default": None},
    ],
}


def test_sensitive_paths_follow_arrays_maps_unions_and_named_references() -> None:
    assert sensitive_fields(NESTED) == {
        "token",
        "lines[].secret",
        "by_key{}.secret",
        "maybe.secret",
    }


def test_redact_replaces_sensitive_values_without_touching_the_input() -> None:
    record = {
        "id": "o-1",
        "token": "s3cr3t",
        "lines": [{"sku": "A", "secret": "x"}, {"sku": "B", "secret": "y"}],
        "by_key": {"k": {"sku": "C", "secret": "z"}},
        "maybe": None,
    }
    before = json.dumps(record)
    out = redact(record, NESTED)
    assert json.dumps(record) == before
    assert out == {
        "id": "o-1",
        "token": REDACTED,
        "lines": [{"sku": "A", "secret": REDACTED}, {"sku": "B", "secret": REDACTED}],
        "by_key": {"k": {"sku": "C", "secret": REDACTED}},
        "maybe": None,
    }
    assert redact({"id": "o-2", "token": None}, NESTED)["token"] is None


def test_parse_is_cached_by_text() -> None:
    assert parse(NESTED) is parse(json.dumps(NESTED, separators=(",", ":")))
    assert parse(parse(NESTED)) is parse(NESTED)


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    return target


def test_unlisted_schema_file_is_an_error(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "stray.avsc").write_text('"string"')
    with pytest.raises(SchemaFileError, match=r"stray\.avsc .*not listed in topics\.json"):
        load_dir(d)


def test_missing_manifest_bad_level_and_bad_schema_are_errors(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    manifest = json.loads((d / "topics.json").read_text())
    manifest["orders.created"]["compatibility"] = "SIDEWAYS"
    (d / "topics.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaFileError, match="SIDEWAYS"):
        load_dir(d)
    manifest["orders.created"]["compatibility"] = "FULL"
    (d / "topics.json").write_text(json.dumps(manifest))
    (d / "order_created.avsc").write_text('{"type": "record", "name": "X", "fields": [{"name": 1}]}')
    with pytest.raises(SchemaFileError, match=r"order_created\.avsc"):
        load_dir(d)
    (d / "topics.json").unlink()
    with pytest.raises(SchemaFileError, match=r"topics\.json is missing"):
        load_dir(d)
