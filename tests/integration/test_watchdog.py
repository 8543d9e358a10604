"""The stuck-partition watchdog and handler deadlines, against a real worker."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from streams.config import Settings
from streams.local.stack import StackInfo
from streams.publish import Publisher
from tests.harness import PartnerServer, StatusReader, WorkerProc, wait_for
from tests.integration.apps.hang_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.hang_app:app"
WATCHDOG_S = 1.0


def test_hung_handler_is_reported_then_retried_and_the_partition_moves(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    settings = dataclasses.replace(
        Settings.from_env(),
        workspace=unique,
        kafka_bootstrap=stack.bootstrap,
        schema_registry_url=stack.registry_url,
    )
    pub = Publisher(app, settings)
    worker = WorkerProc(
        APP,
        unique,
        tmp_path / "state",
        partner.url,
        tmp_path / "w.log",
        extra_env={"STREAMS_PARTITIONS": "1", "STREAMS_WATCHDOG_S": str(WATCHDOG_S)},
    ).wait_ready()
    statuses = StatusReader(stack.bootstrap, stack.registry_url, f"{unique}.streams.status")
    try:
        event = pub.envelope("catalog.sku_changed", "hang-1", {"change": "UPDATED", "catalog_version": 1})
        pub.publish("catalog.sku_changed", event)
        pub.flush()
        published = time.monotonic()

        def stuck_report() -> str | None:
            response = worker.get("/readyz")
            if response is not None and response.status_code == 503 and "stuck" in response.text:
                return response.text
            return None

        report = wait_for(stuck_report, 30, "the watchdog to report the partition")
        reported_after = time.monotonic() - published
        assert f"{unique}.catalog.sku_changed[0]" in report and "handler skus" in report
        metrics = worker.get("/metrics")
        assert metrics is not None
        assert (
            f'streams_stuck_partitions{{handler="skus",partition="0",topic="{unique}.catalog.sku_changed"}} 1.0'
            in metrics.text
        )

        # Later events of other entities wait behind the hung one, then flow once the
        # deadline turns the hang into a transient failure - without a restart.
        for i in range(20):
            pub.publish(
                "catalog.sku_changed",
                pub.envelope("catalog.sku_changed", f"sku-{i}", {"change": "UPDATED", "catalog_version": 1}),
            )
        pub.flush()
        statuses.wait(lambda s: sum(x["outcome"] == "SUCCEEDED" for x in s) >= 21, 90, "21 successes")
        # A heal (1 s threshold here) re-reads from the committed offset: a record that
        # completed already says so again (a copy of its SUCCEEDED), it does not run again.
        outcomes = statuses.outcomes("hang-1")
        assert outcomes[0] == "RETRYING" and outcomes[1:] and set(outcomes[1:]) == {"SUCCEEDED"}, outcomes
        timeout = next(s for s in statuses.statuses if s["entity_id"] == "hang-1")
        assert timeout["error_class"] == "streams.retry.HandlerTimeout"
        wait_for(worker.ready, 30, "/readyz healthy again")
        print(
            f"\nwatchdog reported the hung partition {reported_after:.1f}s after the event "
            f"(threshold {WATCHDOG_S:g}s); deadline 6s; partition moved on without a restart"
        )
    finally:
        worker.stop()
        statuses.close()
