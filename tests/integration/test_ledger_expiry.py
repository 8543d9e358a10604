"""Ledger expiry: entries past retention leave RocksDB and, as tombstones, the changelog."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streams.config import Settings
from streams.local.stack import StackInfo
from streams.publish import Publisher
from tests.harness import PartnerServer, StatusReader, TopicReader, WorkerProc, wait_for
from tests.integration.apps.expiry_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.expiry_app:app"


def test_expired_entries_leave_rocksdb_and_the_changelog(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    settings = dataclasses.replace(
        Settings.from_env(),
        workspace=unique,
        kafka_bootstrap=stack.bootstrap,
        schema_registry_url=stack.registry_url,
    )
    pub = Publisher(app, settings)
    event = pub.envelope("catalog.sku_changed", "sku-1", {"change": "UPDATED", "catalog_version": 1})
    pub.publish("catalog.sku_changed", event)
    pub.flush()
    worker = WorkerProc(APP, unique, tmp_path / "state", partner.url, tmp_path / "w.log").wait_ready()
    statuses = StatusReader(stack.bootstrap, stack.registry_url, f"{unique}.streams.status")
    changelog = TopicReader(stack.bootstrap, f"{unique}.expiry-test-skus-ledger-changelog")
    try:
        statuses.wait(lambda s: len(s) >= 1, 60, "the first status")
        assert statuses.outcomes("sku-1") == ["SUCCEEDED"]
        assert event["event_id"] in str(worker.ledger("skus", "sku-1"))
        # Past the 2 s retention the sweep removes the entity from RocksDB...
        wait_for(lambda: worker.ledger("skus", "sku-1") == {}, 30, "sku-1 to expire from the ledger")

        # ...and writes a tombstone, so compaction removes it from the changelog too.
        def last_value() -> list[bytes | None] | None:
            values = [m.value() for m in changelog.poll() if m.key() == b"sku-1"]
            return values if values and values[-1] is None else None

        values = wait_for(last_value, 30, "a tombstone for sku-1 on the changelog")
        assert values[0] is not None and values[-1] is None
        # Expired means forgotten: the same event is handled again, not skipped.
        pub.publish("catalog.sku_changed", event)
        pub.flush()
        statuses.wait(lambda s: len(s) >= 2, 60, "the second status")
        assert statuses.outcomes("sku-1") == ["SUCCEEDED", "SUCCEEDED"]
    finally:
        worker.stop()
        statuses.close()
        changelog.close()
