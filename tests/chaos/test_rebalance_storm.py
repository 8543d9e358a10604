"""A rebalance storm: workers join and leave (gracefully) every few seconds under a steady stream.

Graceful leaves commit what they finished, so nothing may be redone at the partner, no
status may be emitted twice, and every event must complete once the storm calms down.
"""

from __future__ import annotations

import random
import time
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
    publisher_for,
)

MAX_WORKERS = 3  # 2 cores: more JVM-free Python workers than this only measures the CPU


@pytest.mark.parametrize("scale", SCALES)
def test_workers_join_and_leave_every_few_seconds(
    stack: StackInfo, unique: str, tmp_path: Path, scale: str
) -> None:
    full = full_scale(scale)
    storm_s, rate = (180.0, 100.0) if full else (40.0, 60.0)
    events = int(storm_s * rate)
    rng = random.Random(31)
    settings = chaos_settings(stack.bootstrap, stack.registry_url, unique, partitions=6)
    create_topics(app, settings)
    workload = Workload.build(publisher_for(app, settings), events, seed=31)
    with chaos_partner(tmp_path) as partner:
        workers = Workers(settings, tmp_path, partner.url)
        feeder: Feeder | None = None
        joins = leaves = 0
        try:
            workers.start("w1")
            workers.wait_ready()
            sc = Scenario("rebalance-storm", app, settings, stack.registry_url, workload, partner, workers)
            feeder = Feeder(stack.bootstrap, settings.topic("orders.created"), workload.records, rate).start()
            names = [f"w{i}" for i in range(1, MAX_WORKERS + 1)]
            until = time.monotonic() + storm_s
            while time.monotonic() < until:
                # The storm's schedule is the fault itself: a change every 2-6 s.
                time.sleep(rng.uniform(2.0, 6.0))
                workers.assert_alive()
                idle = [n for n in names if n not in workers.live]
                if idle and (len(workers.live) == 1 or rng.random() < 0.5):
                    workers.start(rng.choice(idle))
                    joins += 1
                else:
                    workers.stop(rng.choice(sorted(workers.live)))  # SIGTERM: a graceful leave
                    leaves += 1
            feeder.join()
            sc.faults = {"joins": joins, "leaves": leaves, "storm_s": storm_s, "partitions": 6}
            check_invariants(sc, complete_within_s=600 if full else 240)
        finally:
            if feeder is not None:
                feeder.stop()
            workers.close()
