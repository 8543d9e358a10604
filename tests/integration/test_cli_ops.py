"""The operating commands against the real broker, registry and a real worker:
topics, produce, tail, dlq, status; metrics and readiness of the worker's web port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from streams.cli import main
from streams.local.stack import StackInfo
from streams.outcomes import H_ERROR_CLASS, H_ORIGIN_PARTITION, H_ORIGIN_TOPIC, H_REPLAY
from streams.topics import admin
from tests.harness import REPO, PartnerServer, TopicReader, WorkerProc, headers_of, wait_for

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.runtime_app:app"


def _env(ws: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "STREAMS_APP": APP, "STREAMS_WORKSPACE": ws, "PYTHONPATH": str(REPO), **extra}


def cli(ws: str, *argv: str, timeout_s: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv],
        cwd=REPO,
        env=_env(ws, **env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("streams"), lines
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_is_accurate_and_errors_are_one_line(
    stack: StackInfo, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for command in ("topics", "produce", "tail", "dlq", "status", "worker"):
        assert re.search(rf"^\s+{command}\s", top, re.M), command
    for argv in (["topics", "create"], ["produce"], ["tail"], ["dlq", "replay"], ["status"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = capsys.readouterr().out
        assert text.startswith("usage: streams") and len(text.splitlines()) < 45, argv

    # Broker or registry unreachable: one line naming the fix, quickly, never a traceback.
    down = cli(unique, "topics", "describe", STREAMS_KAFKA_BOOTSTRAP="127.0.0.1:1", timeout_s=30)
    _one_line_error(down, "127.0.0.1:1", "STREAMS_KAFKA_BOOTSTRAP")
    registry_down = cli(
        unique, "tail", "--max", "1", STREAMS_SCHEMA_REGISTRY_URL="http://127.0.0.1:1", timeout_s=30
    )
    _one_line_error(registry_down, "STREAMS_SCHEMA_REGISTRY_URL")
    # A malformed setting names the variable and the accepted form.
    _one_line_error(cli(unique, "tail", STREAMS_WEB_PORT="http"), "STREAMS_WEB_PORT", "1-65535")
    _one_line_error(cli(unique, "tail", "--outcome", "DONE"), "--outcome", "SUCCEEDED")
    _one_line_error(cli(unique, "tail", "--since", "yesterday"), "--since", "10m")
    _one_line_error(cli(unique, "tail"), f"{unique}.streams.status does not exist", "streams topics create")
    _one_line_error(cli(unique, "produce", "nope.topic", "--value", "{}"), "nope.topic", "topics.json")
    _one_line_error(cli(unique, "dlq", "list", "orders.created"), "does not exist")
    _one_line_error(cli(unique, "dlq", "show", "orders.created", "--offset", "12"), "PARTITION:OFFSET")
    _one_line_error(
        cli(unique, "status", "x", "--worker", "http://127.0.0.1:1"), "no worker answered", "--worker"
    )
    usage = cli(unique, "produce", "orders.created")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1
    assert "--value" in usage.stderr and "--help" in usage.stderr


def test_topics_create_is_idempotent_and_describe_shows_drift(stack: StackInfo, unique: str) -> None:
    first = cli(unique, "topics", "create")
    assert first.returncode == 0, first.stderr
    names = [line.split()[1] for line in first.stdout.splitlines() if line.startswith("created")]
    for name in (
        f"{unique}.orders.created",
        f"{unique}.orders.created.retry",
        f"{unique}.orders.created.dlq",
        f"{unique}.orders.created.dlq.replayed",
        f"{unique}.streams.status",
        f"{unique}.runtime-test-orders-ledger-changelog",
    ):
        assert name in names
    again = cli(unique, "topics", "create")
    assert again.returncode == 0 and "0 created" in again.stdout

    described = cli(unique, "topics", "describe", "--json")
    assert described.returncode == 0, described.stdout
    states = {s["topic"]: s for s in map(json.loads, described.stdout.splitlines())}
    changelog = states[f"{unique}.runtime-test-orders-ledger-changelog"]
    assert changelog["config"]["cleanup.policy"] == "compact" and changelog["drift"] == []
    source = states[f"{unique}.orders.created"]
    assert source["config"]["cleanup.policy"] == "delete"
    assert source["config"]["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert source["config"]["min.insync.replicas"] == "1"

    # Someone changes a topic by hand: describe says how it differs and exits 1.
    client = admin(stack.bootstrap)
    resource = ConfigResource(
        ResourceType.TOPIC,
        f"{unique}.orders.created",
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in client.incremental_alter_configs([resource]).values():
        future.result(30)
    drift = wait_for(
        lambda: (r := cli(unique, "topics", "describe")).returncode == 1 and r,
        30,
        "describe to see the drift",
    )
    line = next(x for x in drift.stdout.splitlines() if x.startswith(f"{unique}.orders.created "))
    assert "retention.ms 3600000, declared 604800000" in line


def test_produce_validates_every_line_and_generates_load(
    stack: StackInfo, unique: str, tmp_path: Path
) -> None:
    assert cli(unique, "topics", "create").returncode == 0
    good = {"customer_id": "c-1", "total_cents": 100}
    lines = [
        json.dumps({**good, "entity_id": "o-1"}),
        json.dumps({**good, "entity_id": "o-2"}),
        json.dumps({**good, "entity_id": "o-3", "total_cents": "lots"}),
        json.dumps({**good, "entity_id": "o-4"}),
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    refused = cli(unique, "produce", "orders.created", "--file", str(events))
    _one_line_error(refused, "line 3", "total_cents", "nothing was produced", "--skip-invalid")
    topic = TopicReader(stack.bootstrap, f"{unique}.orders.created")
    try:
        assert topic.poll(1.0) == []
        skipped = cli(unique, "produce", "orders.created", "--file", str(events), "--skip-invalid")
        assert skipped.returncode == 0, skipped.stderr
        assert "produced 3 events" in skipped.stdout and "line 3" in skipped.stderr
        assert sorted(
            m.key() for m in wait_for(lambda: len(topic.poll()) >= 3 and topic.messages, 30, "3")
        ) == [
            b"o-1",
            b"o-2",
            b"o-4",
        ]
        load = cli(unique, "produce", "orders.created", "--value", json.dumps(good), "--count", "200")
        assert load.returncode == 0 and "produced 200 events" in load.stdout
        wait_for(lambda: len(topic.poll()) >= 203, 30, "200 more records")
        assert len({m.key() for m in topic.messages}) == 203  # generated entity IDs are distinct
        one = cli(unique, "produce", "orders.created", "--value", json.dumps(good), "--key", "o-9")
        assert one.returncode == 0 and "entity o-9" in one.stdout
    finally:
        topic.close()


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_worker_readiness_metrics_tail_and_status(
    stack: StackInfo, unique: str, tmp_path: Path, partner: PartnerServer
) -> None:
    assert cli(unique, "topics", "create").returncode == 0
    for i in range(3):
        assert (
            cli(
                unique,
                "produce",
                "orders.created",
                "--value",
                json.dumps({"entity_id": f"o-{i}", "customer_id": "c", "total_cents": 1}),
            ).returncode
            == 0
        )
    worker = WorkerProc(APP, unique, tmp_path / "state", partner.url, tmp_path / "worker.log")
    seen: list[int] = []

    def ready() -> bool:
        response = worker.get("/readyz")
        if response is not None:
            seen.append(response.status_code)
        assert worker.alive(), f"worker died; see {worker.log}"
        return response is not None and response.status_code == 200

    try:
        wait_for(ready, 90, "the worker ready", interval_s=0.05)
        # It answered "not ready" (assignment / table recovery) before it answered ready.
        assert seen[0] == 503 and seen[-1] == 200, seen
        assert worker.get("/healthz").status_code == 200  # type: ignore[union-attr]
        wait_for(lambda: len(partner.completed()) >= 3, 60, "3 orders at the partner")
        before = worker.get("/metrics").text  # type: ignore[union-attr]
        succeeded = _metric(before, "streams_events_total", handler="orders", outcome="SUCCEEDED")
        assert succeeded >= 3
        assert "streams_handler_duration_seconds_bucket" in before and "streams_consumer_lag" in before
        for i in range(3, 6):
            cli(
                unique,
                "produce",
                "orders.created",
                "--value",
                json.dumps({"entity_id": f"o-{i}", "customer_id": "c", "total_cents": 1}),
            )
        wait_for(
            lambda: (
                _metric(
                    worker.get("/metrics").text, "streams_events_total", handler="orders", outcome="SUCCEEDED"
                )  # type: ignore[union-attr]
                >= succeeded + 3
            ),
            60,
            "the SUCCEEDED counter to move by 3",
        )

        tail = cli(unique, "tail", "--json", "--max", "5")
        assert tail.returncode == 0, tail.stderr
        statuses = [json.loads(line) for line in tail.stdout.splitlines()]
        assert len(statuses) == 5 and all(s["outcome"] == "SUCCEEDED" for s in statuses)
        only = cli(
            unique, "tail", "--json", "--entity", "o-4", "--outcome", "succeeded", "--handler", "orders"
        )
        assert [json.loads(x)["entity_id"] for x in only.stdout.splitlines()] == ["o-4"]
        table = cli(unique, "tail", "--since", "1h")
        assert table.stdout.splitlines()[0].split()[:4] == ["TIME", "HANDLER", "ENTITY", "OUTCOME"]
        assert len(table.stdout.splitlines()) == 7 and "\033[" not in table.stdout  # not a TTY: no colour
        waiting = cli(unique, "tail", "--follow", "--since", "1s", "--max", "1", "--timeout", "2")
        assert waiting.returncode == 1 and "0 of 1" in waiting.stderr

        url = f"http://127.0.0.1:{worker.web_port}"
        status = cli(unique, "status", "o-1", "--worker", url)
        assert status.returncode == 0, status.stderr
        assert "order:o-1" in status.stdout and "COMPLETED" in status.stdout
        as_json = json.loads(cli(unique, "status", "o-2", "--worker", url, "--json").stdout)
        assert as_json["orders"]["order:o-2"]["state"] == "COMPLETED" and as_json["skus"] == {}
        assert cli(unique, "status", "nobody", "--worker", url).returncode == 1
    finally:
        worker.stop()
    assert httpx is not None


def _dead_letters(stack: StackInfo, ws: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for i in range(n):
        partition = i % 3
        producer.produce(
            f"{ws}.orders.created.dlq",
            key=f"order-{i}".encode(),
            value=b"\x07not avro " + bytes([i]),
            partition=partition,
            headers=[
                (H_ORIGIN_TOPIC, f"{ws}.orders.created".encode()),
                (H_ORIGIN_PARTITION, str(partition).encode()),
                (
                    H_ERROR_CLASS,
                    b"streams.retry.TransientError" if i % 2 else b"streams.codec.NotConfluentFramed",
                ),
                ("streams-error-message", b"boom"),
                ("streams-dead-letter-reason", b"retries-exhausted" if i % 2 else b"undecodable"),
            ],
        )
    assert producer.flush(30) == 0


def test_dlq_list_show_and_replay_exactly_once_across_sigint(
    stack: StackInfo, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(unique, "topics", "create").returncode == 0
    _dead_letters(stack, unique, 30)
    listed = cli(unique, "dlq", "list", "orders.created")
    assert listed.returncode == 0, listed.stderr
    assert "30 dead letters (0 replayed)" in listed.stdout
    assert "streams.retry.TransientError  (15)" in listed.stdout
    assert "streams.codec.NotConfluentFramed  (15)" in listed.stdout
    shown = cli(unique, "dlq", "show", "orders.created", "--offset", "0:0")
    assert shown.returncode == 0 and "not decodable" in shown.stdout and "07 6e 6f 74" in shown.stdout

    dry = cli(unique, "dlq", "replay", "orders.created", "--error-class", "TransientError", "--dry-run")
    assert "dry run: 15 of 15" in dry.stdout
    source = TopicReader(stack.bootstrap, f"{unique}.orders.created")
    source.poll()  # assigned before the replay starts, so its reads do not lag the replay
    # 2/s: 15 s for all 30, so the interrupt lands mid-way even on a loaded machine
    # (at 8/s a slow first read saw 6 only after the replay had finished).
    argv = [sys.executable, "-m", "streams.cli", "dlq", "replay", "orders.created", "--rate", "2"]
    replay = subprocess.Popen(
        argv,
        cwd=REPO,
        env=_env(unique),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A runner that starts the suite in the background hands SIGINT down ignored, and
        # Python then never raises KeyboardInterrupt: give the CLI the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: len(source.poll()) >= 6, 60, "some replays committed")
        replay.send_signal(signal.SIGINT)
        _, err = replay.communicate(timeout=30)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert replay.returncode == 130, err
    assert "interrupted after replaying" in err
    halfway = len(source.poll(1.0))
    assert 6 <= halfway < 30, halfway

    rerun = cli(unique, "dlq", "replay", "orders.created")
    assert rerun.returncode == 0, rerun.stderr
    assert f"replayed {30 - halfway} dead letters" in rerun.stdout
    assert "replayed 0 dead letters" in cli(unique, "dlq", "replay", "orders.created").stdout

    records = wait_for(lambda: len(source.poll()) >= 30 and source.messages, 30, "30 replayed records")
    source.poll(1.0)
    origins = [headers_of(m)[H_REPLAY].decode() for m in source.messages]
    assert len(origins) == 30 and len(set(origins)) == 30  # each dead letter exactly once
    by_origin = {headers_of(m)[H_REPLAY].decode(): m for m in records}
    first = by_origin[f"{unique}.orders.created.dlq/0/0"]
    assert first.key() == b"order-0" and first.value() == b"\x07not avro \x00" and first.partition() == 0
    assert not any(k.startswith("streams-") and k != H_REPLAY for k, _ in first.headers() or [])
    assert "30 dead letters (30 replayed)" in cli(unique, "dlq", "list", "orders.created").stdout
    source.close()
