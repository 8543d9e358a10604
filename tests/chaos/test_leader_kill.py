"""On a 3-broker cluster (RF 3, min.insync.replicas 2): SIGKILL the leader of a source partition.

The cluster is `LocalStack(..., brokers=3)` under a temporary state directory, never the
shared stack; it is stopped by its PIDs at the end. The killed node's partitions get new
leaders after its session times out; producers and workers retry meanwhile, so nothing
may be lost or redone. The node is then restarted and the stream finishes.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streams.local.stack import LocalStack, StackInfo
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
    private_stack,
    progress,
    publisher_for,
)

BROKERS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, StackInfo]]:
    with private_stack(tmp_path_factory.mktemp("chaos-cluster"), brokers=BROKERS) as started:
        yield started


def _leader(bootstrap: str, topic: str, partition: int) -> int:
    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return int(meta.topics[topic].partitions[partition].leader)


@pytest.mark.parametrize("scale", SCALES)
def test_sigkill_of_a_partition_leader(
    cluster: tuple[LocalStack, StackInfo], unique: str, tmp_path: Path, scale: str
) -> None:
    stack, info = cluster
    full = full_scale(scale)
    events, rate = (20_000, 150.0) if full else (2_000, 50.0)
    settings = chaos_settings(info.bootstrap, info.registry_url, unique, replication_factor=BROKERS)
    create_topics(app, settings)
    topic = settings.topic("orders.created")
    workload = Workload.build(publisher_for(app, settings), events, seed=53)
    with chaos_partner(tmp_path) as partner:
        workers = Workers(settings, tmp_path, partner.url)
        feeder: Feeder | None = None
        try:
            workers.start("w1")
            workers.start("w2")
            workers.wait_ready()
            sc = Scenario("leader-sigkill", app, settings, info.registry_url, workload, partner, workers)
            feeder = Feeder(info.bootstrap, topic, workload.records, rate).start()
            progress(partner, workload.uniques // 4, 120, "a quarter of the events before the kill", workers)
            node = _leader(info.bootstrap, topic, 0)
            killed = stack.signal_broker(node, signal.SIGKILL)
            progress(partner, workload.uniques // 2, 180, "half the events with the leader down", workers)
            back_at = time.monotonic()
            stack.up(timeout_s=180)  # restarts exactly the killed node
            feeder.join()
            sc.faults = {
                "leader_sigkill": 1,
                "node": node,
                "pid": killed,
                "new_leader_p0": _leader(info.bootstrap, topic, 0),
                "restart_s": round(time.monotonic() - back_at, 1),
            }
            check_invariants(sc, complete_within_s=600 if full else 240)
        finally:
            if feeder is not None:
                feeder.stop()
            workers.close()
