"""Entity quarantine: a failed event holds back later events of its entity, and only those."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.local.stack import StackInfo
from streams.publish import Publisher
from tests.harness import REPO, PartnerServer, StatusReader, TopicReader, WorkerProc, wait_for
from tests.integration.apps.ordering_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.ordering_app:app"
RETRY_DELAY_S = 5.0


def _publisher(stack: StackInfo, ws: str) -> Publisher:
    settings = dataclasses.replace(
        Settings.from_env(),
        workspace=ws,
        kafka_bootstrap=stack.bootstrap,
        schema_registry_url=stack.registry_url,
        partitions=1,
    )
    return Publisher(app, settings)


def _sku(pub: Publisher, entity: str, version: int) -> dict[str, Any]:
    return pub.envelope(
        "catalog.sku_changed",
        entity,
        {"change": "UPDATED", "catalog_version": version, "changed_fields": ["price"]},
    )


def _worker(ws: str, tmp_path: Path, partner: PartnerServer, name: str, state: Path) -> WorkerProc:
    # One partition: the quarantined entity and everyone else share it.
    return WorkerProc(
        APP, ws, state, partner.url, tmp_path / f"{name}.log", extra_env={"STREAMS_PARTITIONS": "1"}
    )


def _accepted(partner: PartnerServer, entity: str) -> list[int]:
    return [c["version"] for c in partner.calls() if c["entity_id"] == entity and c["status"] == 200]


def test_transient_failure_keeps_entity_order_without_stalling_others(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, unique)
    worker = _worker(unique, tmp_path, partner, "w1", tmp_path / "state").wait_ready()
    statuses = StatusReader(stack.bootstrap, stack.registry_url, f"{unique}.streams.status")
    try:
        partner.control(fail={"sku-x": 1000})  # v1 fails until v3 is parked behind it
        others = [_sku(pub, f"sku-{i}", 1) for i in range(1000)]
        versions = {v: _sku(pub, "sku-x", v) for v in (1, 2, 3)}
        pub.publish("catalog.sku_changed", versions[1])
        start = time.monotonic()
        for i, event in enumerate(others):
            # A steady 200 events/s, well under one worker's capacity: any delay measured
            # below comes from the quarantine, not from a backlog.
            lag = start + i / 200 - time.monotonic()
            if lag > 0:
                pub.flush()
                time.sleep(lag)
            pub.publish("catalog.sku_changed", event)
            if i == 300:
                pub.publish("catalog.sku_changed", versions[2])
            if i == 600:
                pub.publish("catalog.sku_changed", versions[3])
        pub.flush()
        statuses.wait(
            lambda s: any(
                str(x["event_id"]) == versions[3]["event_id"] and x["outcome"] == "PARKED" for x in s
            ),
            60,
            "v3 parked behind v1",
        )
        partner.control(fail={"sku-x": 0})
        wait_for(lambda: _accepted(partner, "sku-x") == [1, 2, 3], 60, "sku-x v1, v2, v3 accepted")
        calls_x = [(c["version"], c["status"]) for c in partner.calls() if c["entity_id"] == "sku-x"]
        failures = len(calls_x) - 3
        assert failures >= 1 and calls_x == [(1, 503)] * failures + [(1, 200), (2, 200), (3, 200)]
        statuses.wait(lambda s: sum(x["outcome"] == "SUCCEEDED" for x in s) >= 1003, 60, "1003 successes")
        by_version = {
            v: [x["outcome"] for x in statuses.statuses if str(x["event_id"]) == e["event_id"]]
            for v, e in versions.items()
        }
        assert by_version == {
            1: ["FAILED"] * failures + ["SUCCEEDED"],
            2: ["PARKED", "SUCCEEDED"],
            3: ["PARKED", "SUCCEEDED"],
        }
        # Everyone else flowed meanwhile: none waited as long as one retry delay.
        source = TopicReader(stack.bootstrap, f"{unique}.catalog.sku_changed")
        produced = {m.offset(): m.timestamp()[1] for m in source.poll(2.0)}
        source.close()
        delays = [
            s["finished_at"].timestamp() * 1000 - produced[s["source_offset"]]
            for s in statuses.statuses
            if s["entity_id"] != "sku-x" and s["outcome"] == "SUCCEEDED"
        ]
        assert len(delays) == 1000
        assert max(delays) < RETRY_DELAY_S * 1000, f"slowest other entity took {max(delays):.0f} ms"
        print(
            f"\nsku-x in order after 2 failures; 1000 other entities, slowest {max(delays):.0f} ms "
            f"(retry delay {RETRY_DELAY_S * 1000:.0f} ms)"
        )
    finally:
        worker.stop()
        statuses.close()


def test_dead_lettered_event_parks_the_rest_until_replayed(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, unique)
    state = tmp_path / "state"
    partner.control(reject_next={"sku-x": 1})  # v1 refused (permanent), then accepted
    for version in (1, 2, 3):
        pub.publish("catalog.sku_changed", _sku(pub, "sku-x", version))
    pub.publish("catalog.sku_changed", _sku(pub, "sku-y", 1))
    pub.flush()
    worker = _worker(unique, tmp_path, partner, "w1", state).wait_ready()
    statuses = StatusReader(stack.bootstrap, stack.registry_url, f"{unique}.streams.status")
    try:
        statuses.wait(lambda s: len(s) >= 4, 60, "four statuses")
        assert statuses.outcomes("sku-x") == ["DEAD_LETTERED", "PARKED", "PARKED"]
        assert statuses.outcomes("sku-y") == ["SUCCEEDED"]
        assert worker.ledger("skus", "sku-x")["~quarantine"]["parked"] == 2
        worker.stop()
        # Parked durably: a restarted worker still holds them.
        worker = _worker(unique, tmp_path, partner, "w2", state).wait_ready()
        assert worker.ledger("skus", "sku-x")["~quarantine"]["parked"] == 2
        assert _accepted(partner, "sku-x") == []
        env = {
            **os.environ,
            "STREAMS_WORKSPACE": unique,
            "STREAMS_KAFKA_BOOTSTRAP": stack.bootstrap,
            "STREAMS_SCHEMA_REGISTRY_URL": stack.registry_url,
        }
        replay = subprocess.run(
            [sys.executable, "-m", "streams.cli", "dlq", "replay", "catalog.sku_changed"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr
        wait_for(lambda: _accepted(partner, "sku-x") == [1, 2, 3], 60, "v1, v2, v3 after the replay")
        assert "~quarantine" not in worker.ledger("skus", "sku-x")
    finally:
        worker.stop()
        statuses.close()
