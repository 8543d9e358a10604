"""`streams demo`: the whole story on the local infrastructure, end to end.

Starts the recording partner API and a worker (workspace `demo`), publishes orders (one
twice), an order the partner fails twice, a poison record, a SKU change and a batch of
imports with one the partner rejects, then prints the status stream as a table until
every event has its final status, and stops what it started.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from streams.codec import AvroCodec
from streams.config import Settings
from streams.errors import InfraError
from streams.examples import app
from streams.local.processes import free_port
from streams.publish import Publisher
from streams.security import child_env, client_config, registry_client
from streams.statusfeed import StatusFeed

COLORS = {
    "SUCCEEDED": "32",
    "SKIPPED_DUPLICATE": "36",
    "RETRYING": "33",
    "FAILED": "35",
    "DEAD_LETTERED": "31",
}


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfraError(f"{what} exited with {proc.returncode}; see {log}")
        if check():
            return
        time.sleep(0.2)
    raise InfraError(f"{what} did not become ready in {timeout_s:g}s; see {log}")


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _row(status: dict[str, Any], color: bool) -> str:
    outcome = status["outcome"]
    text = f"{outcome:<17}"
    if color:
        text = f"\033[{COLORS.get(outcome, '0')}m{text}\033[0m"
    error = status.get("error_class") or ""
    if error:
        error = error.rsplit(".", 1)[-1] + (
            f": {status['error_message']}" if status.get("error_message") else ""
        )
    return (
        f"{status['handler']:<22} {status['entity_id']:<28} {text} {status['attempt']:>3}  "
        f"{status['duration_ms']:>5}ms  {error[:60]}"
    )


def run(settings: Settings, timeout_s: float = 120.0) -> int:
    settings = dataclasses.replace(settings, workspace=settings.workspace or "demo")
    bootstrap = settings.require_kafka()
    registry_url = settings.require_registry()
    run_id = uuid.uuid4().hex[:6]
    logs = Path(settings.state_dir) / "demo" / "logs"
    color = sys.stdout.isatty()

    partner_port, web_port = free_port(), free_port()
    partner_url = f"http://127.0.0.1:{partner_port}"
    env = {
        **os.environ,
        "STREAMS_PARTNER_URL": partner_url,
        "STREAMS_WEB_PORT": str(web_port),
        "STREAMS_STATE_DIR": str(Path(settings.state_dir) / "demo"),
        "STREAMS_WORKSPACE": settings.workspace,
        "STREAMS_KAFKA_BOOTSTRAP": bootstrap,
        "STREAMS_SCHEMA_REGISTRY_URL": registry_url,
        # This process's credentials (maybe the local stack's), whatever the environment says.
        **child_env(settings),
    }
    partner = _spawn(
        [sys.executable, "-m", "streams.partner", "--port", str(partner_port)], env, logs / "partner.log"
    )
    worker = None
    codec = AvroCodec(registry_client(settings))
    publisher = Publisher(app, settings, codec=codec, source="demo")
    feed = None
    try:
        _wait("the partner API", lambda: _ok(f"{partner_url}/healthz"), partner, logs / "partner.log", 30)
        print(f"partner API  {partner_url}  (records every call with its Idempotency-Key)")
        worker = _spawn([sys.executable, "-m", "streams.cli", "worker"], env, logs / "worker.log")
        # Topics exist once the worker is up; read statuses from the current end on.
        _wait(
            "the worker", lambda: _ok(f"http://127.0.0.1:{web_port}/readyz"), worker, logs / "worker.log", 120
        )
        print(
            f"worker       pid {worker.pid}, workspace {settings.workspace!r}, http://127.0.0.1:{web_port}/readyz\n"
        )
        feed = StatusFeed(bootstrap, settings.topic("streams.status"), codec, extra=client_config(settings))

        def order(n: str, email: str) -> dict[str, Any]:
            return publisher.envelope(
                "orders.created",
                f"order-{run_id}-{n}",
                {"customer_id": f"cust-{n}", "customer_email": email, "total_cents": 4200},
            )

        flaky = order("flaky", "flaky@example.com")
        httpx.post(f"{partner_url}/_control", json={"fail": {flaky["entity_id"]: 2}}, timeout=5)
        first = order("1", "ana@example.com")
        events = [
            ("orders.created", first),
            ("orders.created", order("2", "bo@example.com")),
            ("orders.created", first),
            ("orders.created", flaky),
            (
                "catalog.sku_changed",
                publisher.envelope(
                    "catalog.sku_changed",
                    f"sku-{run_id}-1",
                    {"change": "UPDATED", "catalog_version": 7, "changed_fields": ["price"]},
                ),
            ),
        ]
        rejected = f"import-{run_id}-bad"
        httpx.post(f"{partner_url}/_control", json={"reject": [rejected]}, timeout=5)
        for n in ("a", "b", "bad"):
            events.append(
                (
                    "imports.requested",
                    publisher.envelope(
                        "imports.requested",
                        f"import-{run_id}-{n}",
                        {
                            "requested_by": "user-1",
                            "file_url": f"https://files.example/{n}.csv?token=s3cr3t",
                            "format": "CSV",
                        },
                    ),
                )
            )
        print("publishing:")
        for topic, event in events:
            publisher.publish(topic, event)
            print(f"  {settings.topic(topic):<28} {event['entity_id']}")
        publisher.flush()
        poison_key = f"poison-{run_id}"
        producer = Producer(
            {"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", **client_config(settings)}
        )
        producer.produce(
            settings.topic("orders.created"), key=poison_key.encode(), value=b"\x07not avro at all"
        )
        producer.flush(30)
        print(f"  {settings.topic('orders.created'):<28} {poison_key}  (random bytes: a poison record)\n")

        expected = len(events) + 1
        header = f"{'HANDLER':<22} {'ENTITY':<28} {'OUTCOME':<17} {'TRY':>3}  {'TIME':>7}  ERROR"
        print(header)
        print("-" * len(header))
        terminal = 0
        deadline = time.monotonic() + timeout_s
        while terminal < expected and time.monotonic() < deadline:
            for status in feed.poll(0.5):
                if run_id not in status["entity_id"]:
                    continue
                print(_row(status, color), flush=True)
                if status["outcome"] != "RETRYING":
                    terminal += 1
        calls = httpx.get(f"{partner_url}/_calls", timeout=5).json()
        print(
            f"\n{terminal}/{expected} events reached a final status; the partner saw {len(calls)} calls "
            f"({sum(c['status'] == 200 for c in calls)} accepted)."
        )
        print(
            f"dead letters: {settings.topic('orders.created')}.dlq and {settings.topic('imports.requested')}.dlq; "
            f"logs: {logs}"
        )
        return 0 if terminal >= expected else 1
    finally:
        if feed is not None:
            feed.close()
        if worker is not None:
            _stop(worker)
        _stop(partner)
