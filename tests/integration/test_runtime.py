"""The idempotent runtime against the real broker, registry, worker processes and partner API."""

from __future__ import annotations

import dataclasses
import random
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from streams.config import Settings
from streams.local.stack import StackInfo
from streams.outcomes import H_ERROR_CLASS, H_ORIGIN_OFFSET, H_ORIGIN_TOPIC, H_REASON
from streams.publish import Publisher
from tests.harness import PartnerServer, StatusReader, TopicReader, WorkerProc, headers_of, wait_for
from tests.integration.apps.runtime_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.runtime_app:app"
TERMINAL = {"SUCCEEDED", "SKIPPED_DUPLICATE", "FAILED", "DEAD_LETTERED"}


@pytest.fixture
def ws(unique: str) -> str:
    return unique


def _publisher(stack: StackInfo, ws: str) -> Publisher:
    settings = dataclasses.replace(
        Settings.from_env(),
        workspace=ws,
        kafka_bootstrap=stack.bootstrap,
        schema_registry_url=stack.registry_url,
    )
    return Publisher(app, settings)


def _order(pub: Publisher, entity: str) -> dict[str, Any]:
    return pub.envelope(
        "orders.created",
        entity,
        {"customer_id": "c-1", "customer_email": "jane@example.com", "total_cents": 1299},
    )


def _statuses(stack: StackInfo, ws: str) -> StatusReader:
    return StatusReader(stack.bootstrap, stack.registry_url, f"{ws}.streams.status")


def _worker(
    ws: str, tmp_path: Path, partner: PartnerServer, name: str = "w1", state: Path | None = None
) -> WorkerProc:
    return WorkerProc(APP, ws, state or tmp_path / f"state-{name}", partner.url, tmp_path / f"{name}.log")


def test_same_event_three_times_calls_partner_once(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, ws)
    event = _order(pub, "order-1")
    for _ in range(3):
        pub.publish("orders.created", event)
    pub.flush()
    worker = _worker(ws, tmp_path, partner).wait_ready()
    statuses = _statuses(stack, ws)
    try:
        statuses.wait(lambda s: len(s) >= 3, 60, "three statuses")
        assert statuses.outcomes("order-1") == ["SUCCEEDED", "SKIPPED_DUPLICATE", "SKIPPED_DUPLICATE"]
        skipped = [s for s in statuses.statuses if s["outcome"] == "SKIPPED_DUPLICATE"]
        assert all(s["duplicate_of"] == event["event_id"] for s in skipped)
        # The ledger remembers the outcome: a retrying producer learns what happened.
        original = statuses.statuses[0]
        assert all(s["original_outcome"] == "SUCCEEDED" for s in skipped)
        assert all(s["original_finished_at"] == original["finished_at"] for s in skipped)
        calls = partner.calls()
        assert [(c["path"], c["key"], c["status"]) for c in calls] == [("/orders", "order:order-1", 200)]
        entry = worker.ledger("orders", "order-1")["order:order-1"]
        assert entry["state"] == "COMPLETED" and entry["attempts"] == 1
        metrics = worker.get("/metrics")
        assert metrics is not None and metrics.status_code == 200
        assert 'streams_events_total{handler="orders",outcome="SUCCEEDED"} 1.0' in metrics.text
        assert 'streams_events_total{handler="orders",outcome="SKIPPED_DUPLICATE"} 2.0' in metrics.text
        # Status events carry IDs, never the sensitive email.
        assert all("jane@example.com" not in str(s) for s in statuses.statuses)
    finally:
        worker.stop()
        statuses.close()


def test_transient_failures_retry_then_succeed_and_exhausted_budget_dead_letters(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, ws)
    partner.control(fail={"order-flaky": 2, "order-down": 10_000})
    flaky, down = _order(pub, "order-flaky"), _order(pub, "order-down")
    pub.publish("orders.created", flaky)
    pub.publish("orders.created", down)
    followers = [_order(pub, f"order-after-{i}") for i in range(30)]
    for event in followers:
        pub.publish("orders.created", event)
    pub.flush()
    worker = _worker(ws, tmp_path, partner).wait_ready()
    statuses = _statuses(stack, ws)
    dlq = TopicReader(stack.bootstrap, f"{ws}.orders.created.dlq")
    try:
        statuses.wait(
            lambda s: "DEAD_LETTERED" in statuses.outcomes("order-down"), 90, "order-down dead-lettered"
        )
        assert statuses.outcomes("order-flaky") == ["RETRYING", "RETRYING", "SUCCEEDED"]
        # 3 in-process attempts per delivery, 1 + 2 retry-topic deliveries: 9 attempts in all.
        assert statuses.outcomes("order-down") == ["RETRYING", "RETRYING", "FAILED"] * 2 + [
            "RETRYING",
            "RETRYING",
            "DEAD_LETTERED",
        ]
        attempts = [s["attempt"] for s in statuses.statuses if s["entity_id"] == "order-down"]
        assert attempts == list(range(1, 10))
        # The partition was never blocked: every follower finished before order-down was dead-lettered.
        index = {id(s): i for i, s in enumerate(statuses.statuses)}
        dead = next(
            s for s in statuses.statuses if s["entity_id"] == "order-down" and s["outcome"] == "DEAD_LETTERED"
        )
        done = [
            s
            for s in statuses.statuses
            if s["entity_id"].startswith("order-after-") and s["outcome"] == "SUCCEEDED"
        ]
        assert len(done) == 30 and all(index[id(s)] < index[id(dead)] for s in done)
        letters = wait_for(lambda: dlq.poll(), 30, "the dead letter")
        assert len(letters) == 1
        assert letters[0].key() == b"order-down"
        headers = headers_of(letters[0])
        assert headers[H_ORIGIN_TOPIC] == f"{ws}.orders.created".encode()
        assert headers[H_REASON] == b"retries-exhausted"
        assert headers[H_ERROR_CLASS] == b"streams.retry.TransientError"
        assert headers["streams-attempt"] == b"9"
    finally:
        worker.stop()
        statuses.close()
        dlq.close()


def test_undecodable_records_are_dead_lettered_with_bytes_intact(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    from confluent_kafka import Producer

    pub = _publisher(stack, ws)
    topic = f"{ws}.orders.created"
    good_before = _order(pub, "order-good-1")
    pub.publish("orders.created", good_before)
    pub.flush()
    valid = pub.encode("orders.created", _order(pub, "x"))
    poison = {
        b"poison-random": random.Random(7).randbytes(64),
        b"poison-magic": b"\x01" + valid[1:],
        b"poison-unknown-id": b"\x00" + struct.pack(">I", 987_654_321) + valid[5:],
        b"poison-truncated": valid[:-3],
    }
    producer = Producer({"bootstrap.servers": stack.bootstrap, "partitioner": "murmur2_random"})
    for key, value in poison.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    good_after = _order(pub, "order-good-2")
    pub.publish("orders.created", good_after)
    pub.flush()

    worker = _worker(ws, tmp_path, partner).wait_ready()
    statuses = _statuses(stack, ws)
    dlq = TopicReader(stack.bootstrap, f"{topic}.dlq")
    try:
        statuses.wait(lambda s: len(s) >= 6, 60, "six statuses")
        letters = wait_for(lambda: len(dlq.poll()) >= 4 and dlq.messages, 30, "four dead letters")
        by_key = {m.key(): m for m in letters}
        assert set(by_key) == set(poison)
        for key, value in poison.items():
            assert by_key[key].value() == value, f"{key!r} bytes changed"
            headers = headers_of(by_key[key])
            assert headers[H_REASON] == b"undecodable"
            assert headers[H_ORIGIN_OFFSET].isdigit()
            assert headers[H_ERROR_CLASS].startswith(b"streams.codec.")
        classes = {headers_of(by_key[k])[H_ERROR_CLASS] for k in poison}
        assert classes == {
            b"streams.codec.NotConfluentFramed",
            b"streams.codec.UnknownSchemaId",
            b"streams.codec.CorruptBody",
        }
        assert statuses.outcomes("order-good-1") == ["SUCCEEDED"]
        assert statuses.outcomes("order-good-2") == ["SUCCEEDED"]
        for key in poison:
            assert statuses.outcomes(key.decode()) == ["DEAD_LETTERED"]
    finally:
        worker.stop()
        statuses.close()
        dlq.close()


def test_batch_with_two_bad_items(stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer) -> None:
    pub = _publisher(stack, ws)
    partner.control(reject=["import-3", "import-7"])
    for i in range(10):
        pub.publish(
            "imports.requested",
            pub.envelope(
                "imports.requested",
                f"import-{i}",
                {
                    "requested_by": "u-1",
                    "file_url": f"https://files.example/secret-token-{i}",
                    "format": "CSV",
                },
            ),
        )
    pub.flush()
    worker = _worker(ws, tmp_path, partner).wait_ready()
    statuses = _statuses(stack, ws)
    try:
        statuses.wait(lambda s: len(s) >= 10, 60, "ten statuses")
        outcomes = {s["entity_id"]: s["outcome"] for s in statuses.statuses}
        assert sorted(k for k, v in outcomes.items() if v == "DEAD_LETTERED") == ["import-3", "import-7"]
        assert sum(v == "SUCCEEDED" for v in outcomes.values()) == 8
        assert len(statuses.statuses) == 10
        assert all("secret-token" not in str(s) for s in statuses.statuses)
    finally:
        worker.stop()
        statuses.close()


def test_sigkill_mid_stream_loses_nothing(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, ws)
    rng = random.Random(42)
    uniques = [_order(pub, f"order-{i}") for i in range(800)]
    stream = uniques + [rng.choice(uniques) for _ in range(200)]
    rng.shuffle(stream)
    for event in stream:
        pub.publish("orders.created", event)
    pub.flush()
    state = tmp_path / "state"
    worker = _worker(ws, tmp_path, partner, state=state).wait_ready()
    wait_for(lambda: len(partner.calls()) >= 300, 90, "300 partner calls")
    worker.kill()
    restarted = _worker(ws, tmp_path, partner, name="w2", state=state).wait_ready()
    statuses = _statuses(stack, ws)
    try:
        wanted = {f"order:{e['entity_id']}" for e in uniques}
        wait_for(lambda: set(partner.completed()) >= wanted, 120, "every unique order at the partner")
        completed = partner.completed()
        assert set(completed) == wanted  # nothing lost, nothing invented
        resent = {k: n for k, n in completed.items() if n > 1}
        # A re-sent key can only be one the killed worker had in flight (not committed).
        assert len(resent) < 300, f"{len(resent)} keys re-sent"
        statuses.wait(
            lambda s: (
                {x["entity_id"] for x in s if x["outcome"] == "SUCCEEDED"}
                >= {e["entity_id"] for e in uniques}
            ),
            60,
            "a SUCCEEDED status per order",
        )
        print(
            f"\n1000 events (800 unique), SIGKILL after >=300 calls: {len(resent)} keys re-sent "
            f"with the same Idempotency-Key, 0 lost"
        )
    finally:
        restarted.stop()
        statuses.close()


def test_ledger_restored_from_changelog_after_state_loss(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, ws)
    events = [_order(pub, f"order-{i}") for i in range(20)]
    for event in events:
        pub.publish("orders.created", event)
    pub.flush()
    state = tmp_path / "state"
    worker = _worker(ws, tmp_path, partner, state=state).wait_ready()
    wait_for(lambda: len(partner.completed()) == 20, 60, "20 orders at the partner")
    worker.stop()
    shutil.rmtree(state)
    for event in events:  # the same events again, as a producer retry would send them
        pub.publish("orders.created", event)
    pub.flush()
    statuses = _statuses(stack, ws)
    worker = _worker(ws, tmp_path, partner, name="w2", state=state).wait_ready()
    try:
        statuses.wait(lambda s: sum(x["outcome"] == "SKIPPED_DUPLICATE" for x in s) >= 20, 60, "20 skips")
        assert all(n == 1 for n in partner.completed().values())
        assert len(partner.calls()) == 20
    finally:
        worker.stop()
        statuses.close()


def test_two_workers_one_stopped_mid_stream(
    stack: StackInfo, ws: str, tmp_path: Path, partner: PartnerServer
) -> None:
    pub = _publisher(stack, ws)
    first = _worker(ws, tmp_path, partner, name="w1").wait_ready()
    second = _worker(ws, tmp_path, partner, name="w2")
    try:
        wait_for(lambda: second.ready() and first.ready(), 90, "both workers ready")
        for i in range(600):
            pub.publish("orders.created", _order(pub, f"order-{i}"))
        pub.flush()
        wait_for(lambda: len(partner.calls()) >= 150, 60, "150 partner calls")
        second.stop()  # graceful: commits what it finished, its partitions move to the first
        wait_for(lambda: len(partner.completed()) >= 600, 120, "600 orders at the partner")
        completed = partner.completed()
        assert len(completed) == 600
        redone = {k: n for k, n in completed.items() if n > 1}
        assert redone == {}, f"completed events redone after the rebalance: {redone}"
    finally:
        first.stop()
        second.stop()


def test_workspaces_do_not_see_each_other(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    ws_a, ws_b = f"{unique}a", f"{unique}b"
    pub_a, pub_b = _publisher(stack, ws_a), _publisher(stack, ws_b)
    pub_a.publish("orders.created", _order(pub_a, f"{ws_a}-order"))
    pub_b.publish("orders.created", _order(pub_b, f"{ws_b}-order"))
    pub_a.flush()
    pub_b.flush()
    worker = _worker(ws_a, tmp_path, partner).wait_ready()
    statuses_a, statuses_b = _statuses(stack, ws_a), _statuses(stack, ws_b)
    try:
        statuses_a.wait(lambda s: len(s) >= 1, 60, "workspace A's status")
        assert [c["entity_id"] for c in partner.calls()] == [f"{ws_a}-order"]
        assert statuses_b.read() == []
        assert all(s["workspace"] == ws_a for s in statuses_a.statuses)
    finally:
        worker.stop()
        statuses_a.close()
        statuses_b.close()
