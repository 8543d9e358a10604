"""Workers SIGKILLed at random moments while a mixed stream (20% duplicates, 1% poison) flows.

Two workers share the group; at k random points of progress (k = 5 full, 2 short) one of
them, chosen at random, is SIGKILLed and restarted on its state directory. At-least-once
allows exactly one thing to happen twice: a handler call that reached the partner before
the kill but whose record was not committed yet; `InFlight` bounds those re-sends.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from streams.local.stack import StackInfo
from tests.chaos.apps.chaos_app import app
from tests.chaos_harness import (
    SCALES,
    Feeder,
    InFlight,
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


@pytest.mark.parametrize("scale", SCALES)
def test_worker_sigkills_during_a_mixed_stream(
    stack: StackInfo, unique: str, tmp_path: Path, scale: str
) -> None:
    full = full_scale(scale)
    events, kills = (100_000, 5) if full else (3_000, 2)
    rng = random.Random(11)
    settings = chaos_settings(stack.bootstrap, stack.registry_url, unique)
    create_topics(app, settings)
    workload = Workload.build(publisher_for(app, settings), events, seed=11)
    with chaos_partner(tmp_path) as partner:
        workers = Workers(settings, tmp_path, partner.url)
        try:
            for name in ("w1", "w2"):
                workers.start(name)
            feeder = Feeder(
                stack.bootstrap, settings.topic("orders.created"), workload.records, rate=0
            ).start()
            sc = Scenario("worker-sigkill", app, settings, stack.registry_url, workload, partner, workers)
            sc.sigkills = InFlight()
            # Random moments, spread over the run: kill i happens somewhere in the i-th slice.
            slices = [(i + rng.uniform(0.15, 0.85)) / (kills + 0.5) for i in range(kills)]
            for n, share in enumerate(slices, start=1):
                target = int(share * workload.uniques)
                progress(
                    partner, target, 300 if full else 120, f"{target} completions before kill {n}", workers
                )
                victim = rng.choice(sorted(workers.live))
                workers.kill(victim)
                sc.sigkills.note(stack.bootstrap, sc.group, sc.consumed_topics)
                workers.start(victim)
            assert partner.completed_keys() < workload.uniques, "the stream ended before the last kill"
            feeder.join()
            sc.faults = {"worker_sigkill": kills, "workers": 2}
            figures = check_invariants(sc, complete_within_s=900 if full else 180)
            assert figures["resent_keys"] <= figures["resend_bound"]
        finally:
            workers.close()
