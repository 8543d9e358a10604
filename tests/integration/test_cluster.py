"""A multi-node run on this machine: a 3-broker KRaft cluster, three workers, faults and scaling.

The cluster is `streams local up --brokers 3` under a state directory of its own (never
the shared single-broker stack), started once for this module and stopped by its PIDs.
Topics are replication factor 3 with `min.insync.replicas=2`. Each test streams order
events at a steady rate while it breaks or rescales things, then checks: every event
completed at the partner, none completed twice, the group's lag back to zero by itself,
and no worker crashed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.config import Settings
from streams.local import processes
from streams.local.stack import LocalStack, StackInfo
from tests.cluster_harness import (
    SteadyStream,
    cluster_settings,
    group_lag,
    group_lag_by_partition,
    topic_layout,
)
from tests.harness import PartnerServer, StatusReader, TopicReader, WorkerProc, wait_for
from tests.integration.apps.runtime_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.runtime_app:app"
BROKERS = 3
RATE = 40.0  # events per second: steady, and gentle enough for 2 cores
UNTIL_STOPPED = 1_000_000  # a stream count no scenario reaches: each stops its stream itself


class Cluster:
    def __init__(self, stack: LocalStack, info: StackInfo, started_s: float) -> None:
        self.stack = stack
        self.info = info
        self.started_s = started_s

    def worker(
        self, ws: str, tmp: Path, partner: PartnerServer, name: str, state: Path | None = None
    ) -> WorkerProc:
        env = {
            "STREAMS_KAFKA_BOOTSTRAP": self.info.bootstrap,
            "STREAMS_SCHEMA_REGISTRY_URL": self.info.registry_url,
            "STREAMS_REPLICATION_FACTOR": str(BROKERS),
        }
        return WorkerProc(APP, ws, state or tmp / f"state-{name}", partner.url, tmp / f"{name}.log", env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("cluster")
    env = {
        "STREAMS_STATE_DIR": str(state),
        "STREAMS_LOCAL_KAFKA_HEAP_MB": os.environ.get("STREAMS_LOCAL_KAFKA_HEAP_MB", "384"),
    }
    stack = LocalStack(Settings.from_env(env), brokers=BROKERS)
    started = time.monotonic()
    try:
        info, _ = stack.up(timeout_s=240)
        elapsed = time.monotonic() - started
        rss = ", ".join(f"{processes.rss_mib(pid):.0f}" for pid in info.broker_pids)
        print(f"\n{BROKERS}-broker cluster up in {elapsed:.1f}s at {info.bootstrap}; broker RSS MiB: {rss}")
        yield Cluster(stack, info, elapsed)
    finally:
        stack.down()


def _completed(partner: PartnerServer) -> int:
    return len(partner.completed())


def _progress(
    partner: PartnerServer, more: int, timeout_s: float, what: str, workers: list[WorkerProc] | None = None
) -> int:
    """Wait until `more` further keys completed at the partner; returns the new count."""
    target = _completed(partner) + more
    try:
        wait_for(lambda: _completed(partner) >= target, timeout_s, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; workers: {_diagnose(workers or [])}") from None
    return _completed(partner)


def _diagnose(workers: list[WorkerProc]) -> str:
    """Each worker's readiness and in-flight gauge, for a failure message."""
    parts = []
    for w in workers:
        ready = w.get("/readyz")
        metrics = w.get("/metrics")
        in_flight = [
            line
            for line in (metrics.text.splitlines() if metrics is not None else [])
            if line.startswith("streams_in_flight")
        ]
        held = w.get("/debug/partitions")
        tasks = w.get("/debug/tasks")
        committing = [
            t
            for t in (tasks.json() if tasks is not None else [])
            if any(("commit" in f or "flush" in f) for f in t["stack"])
        ]
        parts.append(
            f"{w.log.name}: readyz={ready.text if ready is not None else None} {in_flight} "
            f"partitions={held.text if held is not None else None} committing={committing}"
        )
    return "; ".join(parts)


def _trace(cluster: Cluster, ws: str, keys: set[str]) -> str:
    """Where the first few missing events are: their records and their statuses."""
    entities = {k.split(":", 1)[1] for k in sorted(keys)[:5]}
    records = TopicReader(cluster.info.bootstrap, f"{ws}.orders.created")
    statuses = StatusReader(cluster.info.bootstrap, cluster.info.registry_url, f"{ws}.streams.status")
    for _ in range(10):
        records.poll(1.0)
        statuses.read()
    where = {
        m.key().decode(): (m.partition(), m.offset())
        for m in records.messages
        if m.key() is not None and m.key().decode() in entities
    }
    seen = {
        e: [
            (s["outcome"], s["source_partition"], s["source_offset"])
            for s in statuses.statuses
            if s["entity_id"] == e
        ]
        for e in entities
    }
    return f"records {where}, statuses {seen}"


def _settle(
    cluster: Cluster, ws: str, stream: SteadyStream, partner: PartnerServer, workers: list[WorkerProc]
) -> dict[str, int]:
    """Wait for the end state and check the invariants; returns the counts checked."""
    sent = stream.join()
    wanted = stream.wanted_keys()

    def all_done() -> bool:
        assert all(w.alive() for w in workers), "a worker crashed"
        return set(partner.completed()) >= wanted

    try:
        wait_for(all_done, 120, f"all {len(wanted)} events completed at the partner")
    except AssertionError as exc:
        missing = wanted - set(partner.completed())
        raise AssertionError(
            f"{exc}; {len(missing)} missing: {_trace(cluster, ws, missing)}; workers: {_diagnose(workers)}"
        ) from None
    group = f"{ws}.{app.name}"
    topics = [f"{ws}.{h.topic}{suffix}" for h in app.handlers for suffix in ("", ".retry")]
    started = time.monotonic()
    final: dict[str, int] = {}

    def lag_zero() -> bool:
        nonlocal final
        final = group_lag(cluster.info.bootstrap, group, topics)
        return bool(final) and sum(final.values()) == 0

    try:
        wait_for(lag_zero, 90, f"group {group} lag back to zero")
    except AssertionError as exc:
        detail = group_lag_by_partition(cluster.info.bootstrap, group, topics)
        raise AssertionError(f"{exc}; lag by partition: {detail}; workers: {_diagnose(workers)}") from None
    lag_s = time.monotonic() - started
    completed = partner.completed()
    redone = {k: n for k, n in completed.items() if n > 1}
    assert all(w.alive() for w in workers), "a worker crashed"
    assert set(completed) == wanted, "events lost or invented"
    assert redone == {}, f"{len(redone)} completed events redone at the partner: {list(redone)[:5]}"
    calls = partner.calls()
    return {
        "published": len(sent),
        "completed": len(completed),
        "lost": len(wanted - set(completed)),
        "redone": len(redone),
        "partner_calls_2xx": sum(1 for c in calls if c["status"] == 200),
        "partner_calls": len(calls),
        "lag_topics": len(final),
        "lag_after_s": round(lag_s, 1),
    }


def test_cluster_topics_are_replicated(
    cluster: Cluster, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    worker = cluster.worker(unique, tmp_path, partner, "w1").wait_ready()
    try:
        source = topic_layout(cluster.info.bootstrap, f"{unique}.orders.created")
        changelog = topic_layout(cluster.info.bootstrap, f"{unique}.{app.name}-orders-ledger-changelog")
        print(f"\nsource topic {source}\nchangelog    {changelog}")
        for layout in (source, changelog):
            assert layout["replication_factor"] == 3
            assert layout["min_isr_replicas"] == 3
            assert layout["min.insync.replicas"] == 2
        assert changelog["cleanup.policy"] == "compact"
    finally:
        worker.stop()


def test_broker_and_worker_failures_under_a_steady_stream(
    cluster: Cluster, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    ws = unique
    workers = [cluster.worker(ws, tmp_path, partner, f"w{i}") for i in (1, 2, 3)]
    live = list(workers)
    stream: SteadyStream | None = None
    try:
        wait_for(lambda: all(w.ready() for w in workers), 120, "three workers ready")
        settings = cluster_settings(cluster.info.bootstrap, cluster.info.registry_url, ws, BROKERS)
        # Runs until stopped: every phase below happens under the stream, however slow the machine.
        stream = SteadyStream(app, settings, count=UNTIL_STOPPED, rate_per_s=RATE).start()
        _progress(partner, 300, 60, "300 orders before the faults")

        killed = cluster.stack.signal_broker(2)  # SIGKILL, by its recorded PID
        during_broker = _progress(partner, 300, 90, "300 more orders with a broker down")

        victim = workers[1]
        victim.stop()  # graceful: it commits what it finished; its partitions move
        live.remove(victim)
        during_both = _progress(partner, 200, 90, "200 more orders with a broker and a worker down")

        restarted_at = time.monotonic()
        info, _ = cluster.stack.up(timeout_s=120)  # restarts exactly the missing node
        broker_back_s = time.monotonic() - restarted_at
        back = cluster.worker(ws, tmp_path, partner, "w2-again", state=tmp_path / "state-w2")
        live.append(back)
        back.wait_ready(120)
        _progress(partner, 100, 90, "100 more orders after the restarts", live)
        stream.stop()
        counts = _settle(cluster, ws, stream, partner, live)
        print(
            f"\nbroker pid {killed} SIGKILLed, worker w2 stopped, both restarted "
            f"(broker back in {broker_back_s:.1f}s, new pid {info.broker_pids[1]}); "
            f"completed at the partner: {during_broker} by the time w2 stopped, {during_both} before "
            f"the restarts; {counts}"
        )
    finally:
        if stream is not None:
            stream.stop()
        for w in [*workers, *live]:
            w.stop()


def test_scaling_workers_1_to_3_and_back_to_1(
    cluster: Cluster, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    ws = unique
    first = cluster.worker(ws, tmp_path, partner, "w1").wait_ready()
    extra: list[WorkerProc] = []
    stream: SteadyStream | None = None
    try:
        settings = cluster_settings(cluster.info.bootstrap, cluster.info.registry_url, ws, BROKERS)
        stream = SteadyStream(app, settings, count=UNTIL_STOPPED, rate_per_s=RATE).start()
        _progress(partner, 200, 60, "200 orders on one worker")
        extra = [cluster.worker(ws, tmp_path, partner, f"w{i}") for i in (2, 3)]
        wait_for(lambda: all(w.ready() for w in [first, *extra]), 120, "three workers ready")
        at_three = _progress(partner, 200, 60, "200 orders on three workers", [first, *extra])
        extra[1].stop()
        _progress(partner, 100, 60, "100 orders on two workers", [first, extra[0]])
        extra[0].stop()
        at_one = _progress(partner, 100, 60, "100 orders on one worker again", [first])
        stream.stop()
        counts = _settle(cluster, ws, stream, partner, [first])
        print(f"\nscaled 1 -> 3 (at {at_three} completed) -> 1 (at {at_one}); {counts}")
    finally:
        if stream is not None:
            stream.stop()
        first.stop()
        for w in extra:
            w.stop()
