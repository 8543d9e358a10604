"""Test helpers that drive real processes: the partner API, workers, the status topic.

Every process is started here and stopped by its PID; every wait polls a condition
with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
from confluent_kafka import Consumer, TopicPartition

from streams.codec import AvroCodec
from streams.local.processes import free_port
from streams.schema_registry import SchemaRegistryClient

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.2) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


class Proc:
    """A child process with its output in a log file; stopped by PID."""

    #: Every Proc not yet stopped: the `stop_leftover_processes` fixture stops them by
    #: PID after each test, even when the test failed before its own cleanup.
    live: ClassVar[set[Proc]] = set()

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        Proc.live.add(self)
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO)
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        Proc.live.discard(self)
        if self.alive():
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class PartnerServer(Proc):
    """The recording partner API (streams.partner) on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        super().__init__(
            [sys.executable, "-m", "streams.partner", "--port", str(self.port)], dict(os.environ), log
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self._up, 30, "the partner API")

    def _up(self) -> bool:
        assert self.alive(), f"partner died; see {self.log}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def control(self, **body: Any) -> None:
        httpx.post(f"{self.url}/_control", json=body, timeout=5).raise_for_status()

    def calls(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_calls", timeout=10).json())

    def completed(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_completed", timeout=10).json())


class WorkerProc(Proc):
    """`streams worker` for an app and workspace, with its own state dir and web port."""

    def __init__(
        self,
        app: str,
        workspace: str,
        state_dir: Path,
        partner_url: str,
        log: Path,
        extra_env: dict[str, str] | None = None,
        loglevel: str = "info",
    ) -> None:
        self.web_port = free_port()
        env = {
            **os.environ,
            "STREAMS_STATE_DIR": str(state_dir),
            "STREAMS_PARTNER_URL": partner_url,
            "STREAMS_WEB_PORT": str(self.web_port),
            "PYTHONPATH": str(REPO),
            **(extra_env or {}),
        }
        argv = [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--app",
            app,
            "--workspace",
            workspace,
            "--loglevel",
            loglevel,
        ]
        super().__init__(argv, env, log)

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        assert self.alive(), f"worker died; see {self.log}"
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def wait_ready(self, timeout_s: float = 90) -> WorkerProc:
        wait_for(self.ready, timeout_s, f"worker ready (log {self.log})")
        return self

    def ledger(self, handler: str, entity: str) -> dict[str, Any]:
        response = self.get(f"/ledger/{handler}/{entity}")
        assert response is not None and response.status_code == 200
        return dict(response.json())


class TopicReader:
    """Reads a topic from the beginning without a consumer group commit."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.messages: list[Any] = []
        self._assigned = False

    def _assign(self) -> None:
        md = self.consumer.list_topics(self.topic, timeout=10)
        parts = md.topics[self.topic].partitions if self.topic in md.topics else {}
        if parts and not md.topics[self.topic].error:
            self.consumer.assign([TopicPartition(self.topic, p, 0) for p in parts])
            self._assigned = True

    def poll(self, max_s: float = 0.5) -> list[Any]:
        if not self._assigned:
            self._assign()
            if not self._assigned:
                return self.messages
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            batch = self.consumer.consume(1000, timeout=0.1)
            new = [m for m in batch if m.error() is None]
            self.messages.extend(new)
            if not batch:
                break
        return self.messages

    def close(self) -> None:
        self.consumer.close()


class StatusReader(TopicReader):
    """The decoded status events of a workspace."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.codec = AvroCodec(SchemaRegistryClient(registry_url))
        self.statuses: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        before = len(self.messages)
        self.poll()
        for message in self.messages[before:]:
            self.statuses.append(self.codec.decode(message.value()))
        return self.statuses

    def wait(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout_s: float, what: str
    ) -> list[dict[str, Any]]:
        return wait_for(lambda: predicate(self.read()) and self.statuses, timeout_s, what)

    def outcomes(self, entity: str, handler: str | None = None) -> list[str]:
        return [
            s["outcome"]
            for s in self.statuses
            if s["entity_id"] == entity and (handler is None or s["handler"] == handler)
        ]


def headers_of(message: Any) -> dict[str, bytes]:
    return dict(message.headers() or [])


def count(items: Iterable[Any]) -> int:
    return sum(1 for _ in items)
