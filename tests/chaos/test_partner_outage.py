"""The partner API fails every call for a while (500s, then timeouts), then recovers.

Events keep arriving at a steady rate through the outage. The chaos app's retry budget
(about 90 s of retry-topic hops) outlasts the outage, so every event completes once the
partner is back and none is dead-lettered; a timed-out call is never a completion at the
partner, so nothing may reach it twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.local.stack import StackInfo
from tests.chaos.apps.chaos_app import app
from tests.chaos_harness import (
    SCALES,
    Feeder,
    Scenario,
    Workers,
    Workload,
    chaos_partner,
    chaos_settings,
    check_invariants,
    create_topics,
    full_scale,
    progress,
    publisher_for,
)
from tests.harness import wait_for


@pytest.mark.parametrize("scale", SCALES)
def test_partner_500s_and_timeouts_then_recovery(
    stack: StackInfo, unique: str, tmp_path: Path, scale: str
) -> None:
    full = full_scale(scale)
    events, rate, outage_s = (12_000, 100.0, 60.0) if full else (1_500, 50.0, 15.0)
    settings = chaos_settings(stack.bootstrap, stack.registry_url, unique)
    create_topics(app, settings)
    workload = Workload.build(publisher_for(app, settings), events, seed=23)
    with chaos_partner(tmp_path) as partner:
        workers = Workers(settings, tmp_path, partner.url)
        feeder: Feeder | None = None
        try:
            workers.start("w1")
            workers.start("w2")
            workers.wait_ready()
            sc = Scenario("partner-outage", app, settings, stack.registry_url, workload, partner, workers)
            feeder = Feeder(stack.bootstrap, settings.topic("orders.created"), workload.records, rate).start()
            progress(partner, workload.uniques // 5, 120, "a fifth of the events before the outage", workers)
            partner.outage(outage_s, mode="500-then-timeout")
            wait_for(lambda: partner.stats()["outage_left_s"] == 0, outage_s + 30, "the outage to end", 1.0)
            during = partner.stats()
            # The faults were real: every call during the outage failed one way or the other.
            assert during["answers"].get("500", 0) > 0 and during["answers"].get("timeout", 0) > 0
            feeder.join()
            sc.faults = {
                "partner_outage_s": outage_s,
                "answers_500": during["answers"].get("500", 0),
                "timeouts": during["answers"].get("timeout", 0),
                "workers": 2,
            }
            figures = check_invariants(sc, complete_within_s=400 if full else 200)
            assert figures["outcomes"].get("FAILED", 0) > 0, "no event went through the retry topic"
        finally:
            if feeder is not None:
                feeder.stop()
            workers.close()
