"""The real parts together: registry-framed Avro -> broker -> faust agent -> RocksDB table."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.local.processes import free_port
from streams.local.stack import StackInfo

pytestmark = pytest.mark.integration

APP = Path(__file__).parent / "apps" / "smoke_app.py"
SCHEMA = """{"type": "record", "name": "SkuSeen", "namespace": "smoke",
 "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}"""


class Worker:
    """One faust worker subprocess, stopped by its PID."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["SMOKE_WEB_PORT"])
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop(), after the process
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), "worker", "-l", "info", "--web-port", env["SMOKE_WEB_PORT"]],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def count(self, key: str) -> dict[str, object] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/count/{key}", timeout=2)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_for(
        self, key: str, expected: dict[str, object], timeout_s: float = 90
    ) -> dict[str, object] | None:
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker died; see {self.log}"
            seen = self.count(key)
            if seen == expected:
                return seen
            time.sleep(0.2)
        return seen

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._out.close()


def _produce(stack: StackInfo, topic: str, key: str, record: dict[str, object]) -> None:
    serializer = AvroSerializer(SchemaRegistryClient({"url": stack.registry_url}), SCHEMA)
    producer = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    value = serializer(record, SerializationContext(topic, MessageField.VALUE))
    assert value is not None and value[0] == 0  # Confluent framing: magic byte 0
    producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def test_avro_record_reaches_rocksdb_table_and_survives_restart(
    stack: StackInfo, unique: str, tmp_path: Path
) -> None:
    topic = f"{unique}.smoke"
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    env = {
        **os.environ,
        "STREAMS_KAFKA_BOOTSTRAP": stack.bootstrap,
        "STREAMS_SCHEMA_REGISTRY_URL": stack.registry_url,
        "SMOKE_APP": f"{unique}-smoke",
        "SMOKE_TOPIC": topic,
        "SMOKE_DATADIR": str(tmp_path / "state"),
        "SMOKE_WEB_PORT": str(free_port()),
    }
    _produce(stack, topic, "sku-1", {"sku": "SKU-1", "qty": 3})

    first = Worker(env, tmp_path / "worker1.log")
    try:
        assert first.wait_for("sku-1", {"count": 1, "sku": "SKU-1"}) == {"count": 1, "sku": "SKU-1"}
    finally:
        first.stop()
    assert any((tmp_path / "state").rglob("*.sst")) or any((tmp_path / "state").rglob("CURRENT")), (
        "no RocksDB files"
    )

    # Same local RocksDB: the value is there and the record is not processed again.
    env["SMOKE_WEB_PORT"] = str(free_port())
    second = Worker(env, tmp_path / "worker2.log")
    try:
        assert second.wait_for("sku-1", {"count": 1, "sku": "SKU-1"}) == {
            "count": 1,
            "sku": "SKU-1",
        }
        _produce(stack, topic, "sku-1", {"sku": "SKU-1b", "qty": 1})
        assert second.wait_for("sku-1", {"count": 2, "sku": "SKU-1b"}) == {
            "count": 2,
            "sku": "SKU-1b",
        }
    finally:
        second.stop()

    # Local state lost: the table is rebuilt from its changelog topic.
    shutil.rmtree(tmp_path / "state")
    env["SMOKE_WEB_PORT"] = str(free_port())
    third = Worker(env, tmp_path / "worker3.log")
    try:
        assert third.wait_for("sku-1", {"count": 2, "sku": "SKU-1b"}) == {
            "count": 2,
            "sku": "SKU-1b",
        }
    finally:
        third.stop()
