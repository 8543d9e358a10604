"""Kafka over SASL_SSL (SCRAM) and an HTTPS registry with basic auth, for real.

The module starts its own `streams local up --secure` stack in a temporary state
directory (never the shared one) and stops exactly its PIDs at the end. Against it: a
worker round trip, one-line errors for wrong credentials / CA / protocol, and a scan of
everything a run leaves behind (worker log, status events, retry and dead-letter
records, /metrics) for the passwords and the events' sensitive fields.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from streams.codec import AvroCodec
from streams.config import SECURITY_KEYS, Settings
from streams.dlq import DeadLetter, read
from streams.local import certs
from streams.local.stack import LocalStack, StackInfo
from streams.publish import Publisher
from streams.redaction import REDACTED
from streams.security import client_config, registry_client, ssl_context
from streams.statusfeed import StatusFeed
from tests.harness import REPO, WorkerProc, wait_for
from tests.integration.apps.secure_app import app

pytestmark = pytest.mark.integration
APP = "tests.integration.apps.secure_app:app"
#: Nothing listens there: the secure app never calls a partner.
NO_PARTNER = "http://127.0.0.1:9"


@dataclasses.dataclass(frozen=True)
class SecureStack:
    info: StackInfo
    #: Client settings with the stack's endpoints and credentials.
    settings: Settings
    #: What a child process needs: `up`'s export lines (password *files*), every other
    #: security variable emptied so the test runner's environment cannot interfere.
    env: dict[str, str]
    #: Every password of the stack: Kafka client, registry client, inter-broker.
    passwords: dict[str, str]
    home: Path


def _exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        assert line.startswith("export "), line
        key, _, value = line[len("export ") :].partition("=")
        env[key] = value
    return env


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStack]:
    state = tmp_path_factory.mktemp("secure-stack")
    settings = Settings.from_env({"STREAMS_STATE_DIR": str(state)}, cwd=state)
    stack = LocalStack(settings, secure=True)
    started = time.monotonic()
    try:
        info, _ = stack.up(timeout_s=300)
        print(
            f"\nsecure stack up in {time.monotonic() - started:.1f}s: {info.bootstrap}, {info.registry_url}"
        )
        secure_dir = state / "local" / "secure"
        passwords = {
            name: (secure_dir / f"{name}.password").read_text().strip()
            for name in ("kafka", "registry", "broker")
        }
        env = {f"STREAMS_{key}": "" for key in SECURITY_KEYS} | _exports(info.exports())
        yield SecureStack(info, stack.client_settings(), env, passwords, state / "local")
    finally:
        stack.down()


def _cli(args: list[str], env: dict[str, str], timeout_s: float = 60) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def _one_line_error(rc: int, stderr: str) -> str:
    assert rc == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("streams: error: ")
    return lines[0]


def _worker(secure: SecureStack, ws: str, tmp_path: Path, loglevel: str = "info") -> WorkerProc:
    return WorkerProc(
        APP,
        ws,
        tmp_path / "state",
        NO_PARTNER,
        tmp_path / "worker.log",
        extra_env=secure.env,
        loglevel=loglevel,
    )


class Statuses:
    """Every status event of a workspace so far (a StatusFeed over SASL_SSL, accumulated)."""

    def __init__(self, settings: Settings) -> None:
        self.feed = StatusFeed(
            settings.require_kafka(),
            settings.topic(settings.status_topic),
            AvroCodec(registry_client(settings)),
            from_beginning=True,
            extra=client_config(settings),
        )
        assert self.feed.partitions, "the status topic does not exist yet"
        self.seen: list[dict[str, Any]] = []

    def outcomes(self, entity: str) -> list[str]:
        self.seen.extend(self.feed.poll(0.5))
        return [s["outcome"] for s in self.seen if s["entity_id"] == entity]

    def close(self) -> None:
        self.feed.close()


def test_the_stack_listens_for_kafka_clients_on_sasl_ssl_only(secure: SecureStack) -> None:
    props = (secure.home / "kafka" / "server.properties").read_text().splitlines()
    listeners = next(line for line in props if line.startswith("listeners="))
    # One data listener, TLS + SCRAM; the KRaft controller's is the only other one.
    assert (
        listeners
        == f"listeners=SASL_SSL://{secure.info.bootstrap},CONTROLLER://127.0.0.1:"
        + (listeners.rsplit(":", 1)[1])
    )
    assert secure.info.registry_url.startswith("https://127.0.0.1:")
    # The registry demands credentials: no auth -> 401, the stack's -> 200.
    ca = secure.settings.schema_registry_cafile
    assert ca is not None
    verify = ssl_context(str(ca))
    anonymous = httpx.get(f"{secure.info.registry_url}/subjects", verify=verify, timeout=10)
    assert anonymous.status_code == 401
    authed = httpx.get(
        f"{secure.info.registry_url}/subjects",
        verify=verify,
        timeout=10,
        auth=(secure.info.registry_username, secure.passwords["registry"]),
    )
    assert authed.status_code == 200


def test_worker_round_trip_over_sasl_ssl(secure: SecureStack, unique: str, tmp_path: Path) -> None:
    settings = dataclasses.replace(secure.settings, workspace=unique)
    publisher = Publisher(app, settings)
    event = publisher.envelope(
        "orders.created",
        "order-ok",
        {"customer_id": "c-1", "customer_email": "a@example.com", "total_cents": 1299},
    )
    publisher.publish("orders.created", event)
    publisher.flush()
    worker = _worker(secure, unique, tmp_path).wait_ready()
    statuses = Statuses(settings)
    try:
        wait_for(lambda: "SUCCEEDED" in statuses.outcomes("order-ok"), 60, "order-ok SUCCEEDED")
        done = next(s for s in statuses.seen if s["entity_id"] == "order-ok")
        assert str(done["event_id"]) == event["event_id"]
        assert done["handler"] == "orders" and done["source_topic"] == f"{unique}.orders.created"
    finally:
        statuses.close()
        worker.stop()


def test_wrong_kafka_password_is_one_clear_line(secure: SecureStack, unique: str, tmp_path: Path) -> None:
    wrong = {**secure.env, "STREAMS_KAFKA_SASL_PASSWORD_FILE": "", "STREAMS_KAFKA_SASL_PASSWORD": "not-it-42"}
    for args in (
        ["topics", "describe", "--workspace", unique],
        ["worker", "--app", APP, "--workspace", unique],
    ):
        env = {**wrong, "STREAMS_STATE_DIR": str(tmp_path / "state"), "STREAMS_WEB_PORT": "0"}
        rc, out, err, elapsed = _cli(args, env)
        line = _one_line_error(rc, err)
        assert f"Kafka at {secure.info.bootstrap} refused the login" in line, line
        assert "invalid credentials" in line and "STREAMS_KAFKA_SASL_PASSWORD" in line
        assert "not-it-42" not in out + err
        # librdkafka would retry forever; the probe stops at the first refusal (its
        # deadline is 5 s for commands, 10 s for a worker; the interpreter's start on top).
        assert elapsed < 30, f"{args[0]} took {elapsed:.1f}s"


def test_wrong_registry_password_is_one_clear_line(secure: SecureStack) -> None:
    env = {
        **secure.env,
        "STREAMS_SCHEMA_REGISTRY_PASSWORD_FILE": "",
        "STREAMS_SCHEMA_REGISTRY_PASSWORD": "not-it-43",
    }
    rc, out, err, _ = _cli(["schemas", "list"], env)
    line = _one_line_error(rc, err)
    assert "refused GET /subjects (401: User is not authenticated.)" in line, line
    assert "STREAMS_SCHEMA_REGISTRY_PASSWORD" in line and "not-it-43" not in out + err


def test_wrong_ca_and_plaintext_clients_get_one_clear_line(secure: SecureStack, tmp_path: Path) -> None:
    other = certs.ensure(tmp_path / "other-ca")
    cases = {
        "another CA": (
            {"STREAMS_KAFKA_SSL_CAFILE": str(other.ca_file)},
            "not signed by a CA this client trusts",
        ),
        "system CAs": ({"STREAMS_KAFKA_SSL_CAFILE": ""}, "not signed by a CA this client trusts"),
        "plaintext": (
            {
                "STREAMS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
                "STREAMS_KAFKA_SASL_USERNAME": "",
                "STREAMS_KAFKA_SASL_PASSWORD_FILE": "",
                "STREAMS_KAFKA_SSL_CAFILE": "",
            },
            "set STREAMS_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
    }
    for name, (change, expected) in cases.items():
        rc, _, err, elapsed = _cli(["topics", "describe"], {**secure.env, **change})
        line = _one_line_error(rc, err)
        assert expected in line, f"{name}: {line}"
        assert elapsed < 30, f"{name} took {elapsed:.1f}s"
    rc, _, err, _ = _cli(["schemas", "list"], {**secure.env, "STREAMS_SCHEMA_REGISTRY_CAFILE": ""})
    line = _one_line_error(rc, err)
    assert "TLS handshake with the schema registry" in line and "STREAMS_SCHEMA_REGISTRY_CAFILE" in line


def _records(settings: Settings, topic: str) -> list[DeadLetter]:
    return read(settings.require_kafka(), topic, extra=client_config(settings))


def test_no_secret_reaches_logs_statuses_dead_letters_or_metrics(
    secure: SecureStack, unique: str, tmp_path: Path
) -> None:
    settings = dataclasses.replace(secure.settings, workspace=unique)
    tag = uuid.uuid4().hex[:12]
    emails = {n: f"{n}-{tag}@example.com" for n in ("ok", "refused", "busy")}
    file_url = f"https://files.example.com/import.csv?token=tok{tag}"
    publisher = Publisher(app, settings)
    for name, cents in (("ok", 1299), ("refused", 13), ("busy", 7)):
        publisher.publish(
            "orders.created",
            publisher.envelope(
                "orders.created",
                f"order-{name}",
                {"customer_id": "c-1", "customer_email": emails[name], "total_cents": cents},
            ),
        )
    publisher.publish(
        "imports.requested",
        publisher.envelope(
            "imports.requested", "import-1", {"requested_by": "u-1", "file_url": file_url, "format": "CSV"}
        ),
    )
    publisher.flush()
    poison = Producer({"bootstrap.servers": settings.require_kafka(), **client_config(settings)})
    poison.produce(settings.topic("orders.created"), key=b"poison-1", value=b"\x07 not avro " + tag.encode())
    assert poison.flush(30) == 0

    # Debug logging: whatever faust, aiokafka or streams say, the scan sees it.
    worker = _worker(secure, unique, tmp_path, loglevel="debug").wait_ready()
    statuses = Statuses(settings)
    try:
        finals = {
            "order-ok": "SUCCEEDED",
            "order-refused": "DEAD_LETTERED",
            "order-busy": "DEAD_LETTERED",
            "import-1": "DEAD_LETTERED",
            "poison-1": "DEAD_LETTERED",
        }
        wait_for(
            lambda: all(final in statuses.outcomes(entity) for entity, final in finals.items()),
            120,
            "every event's final status",
        )
        # The transient one went the whole way: attempts, a retry-topic hop, more attempts.
        assert statuses.outcomes("order-busy") == ["RETRYING", "FAILED", "RETRYING", "DEAD_LETTERED"]
        metrics = worker.get("/metrics")
        assert metrics is not None and metrics.status_code == 200
    finally:
        statuses.close()
        worker.stop()

    status_records = _records(settings, settings.topic(settings.status_topic))
    retries = _records(settings, settings.topic("orders.created.retry"))
    dead = _records(settings, settings.topic("orders.created.dlq")) + _records(
        settings, settings.topic("imports.requested.dlq")
    )
    corpora: dict[str, bytes] = {
        "worker log": worker.log.read_bytes(),
        "status events (decoded)": repr(statuses.seen).encode(),
        "status records": b"\n".join(
            (r.value or b"") + b"".join(k.encode() + v for k, v in r.headers) for r in status_records
        ),
        "retry-topic headers": b"\n".join(k.encode() + b"=" + v for r in retries for k, v in r.headers),
        "dead-letter headers": b"\n".join(k.encode() + b"=" + v for r in dead for k, v in r.headers),
        "metrics": metrics.text.encode(),
    }
    passwords = {f"{name} password": value.encode() for name, value in secure.passwords.items()}
    sensitive = {f"email {n}": e.encode() for n, e in emails.items()} | {
        "file_url": file_url.encode(),
        "file_url token": f"tok{tag}".encode(),
    }
    leaks = [
        f"{needle} in {where}"
        for where, text in corpora.items()
        for needle, value in (passwords | sensitive).items()
        if value in text
    ]
    # Dead-letter values are the original records byte for byte (a replay needs them), so
    # they hold the sensitive fields by design; never a password.
    dead_values = b"\n".join(r.value or b"" for r in dead)
    leaks += [
        f"{needle} in dead-letter values" for needle, value in passwords.items() if value in dead_values
    ]
    assert not leaks, leaks

    # The scan looked at the real thing: the error texts were there, redacted; the
    # records and log are the run's; the same byte search finds what is there by design.
    assert len(dead) == 4 and len(retries) == 1 and len(status_records) == 8
    messages = [
        s["error_message"] or "" for s in statuses.seen if s["entity_id"] in ("order-refused", "import-1")
    ]
    assert messages and all(REDACTED in m for m in messages), messages
    assert REDACTED.encode() in corpora["dead-letter headers"]
    assert b"order-refused" in corpora["worker log"] and b"DEBUG" in corpora["worker log"]
    assert b'streams_dead_letters_total{handler="orders"' in corpora["metrics"]
    assert emails["refused"].encode() in dead_values and file_url.encode() in dead_values
    assert tag.encode() in dead_values  # the poison record, untouched
