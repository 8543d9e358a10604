"""One Apache Kafka node in KRaft mode (broker and controller in one JVM), on loopback.

A node is either alone (its own single-voter quorum, replication factor 1) or one of a
static quorum of voters (`BrokerSpec.voters`) sharing a cluster ID, with replication
factor 3 and `min.insync.replicas=2` as the cluster's defaults.

A secure node (`BrokerSpec.security`) has one data listener, SASL_SSL (SCRAM-SHA-512 or
-256, the test CA's certificate), used by clients and between brokers alike; only the
KRaft controller listener stays PLAINTEXT on loopback, because SCRAM credentials live in
the metadata the controllers serve and cannot authenticate the controllers themselves.
The SCRAM users are written into the storage at format time (`--add-scram`), as salted
hashes computed here, so no password appears on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.errors import InfraError
from streams.local.artifacts import Artifacts
from streams.secret import Secret

#: Both are enabled on the secure listener, and every user gets credentials for both.
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
_SCRAM_ITERATIONS = 8192

_LOG4J2 = """\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.statechange.name = state.change.logger
logger.statechange.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM login the broker accepts."""

    name: str
    password: Secret


@dataclass(frozen=True)
class BrokerSecurity:
    """What a SASL_SSL node needs: its certificate, the CA, and who may log in."""

    #: The server certificate and its PKCS#8 key in one PEM file.
    keystore: Path
    truststore: Path
    #: The broker's own identity on the inter-broker connections.
    inter_broker: ScramUser
    #: Client users (created at format time, with the broker's own).
    users: tuple[ScramUser, ...]


@dataclass(frozen=True)
class BrokerSpec:
    """Where one broker keeps its files and which ports it listens on."""

    home: Path
    port: int
    controller_port: int
    heap_mb: int
    node_id: int = 1
    #: (node id, controller port) of every voter of a multi-node quorum; empty when alone.
    voters: tuple[tuple[int, int], ...] = ()
    #: Where the cluster ID all voters are formatted with lives (multi-node only).
    cluster_id_file: Path | None = None
    #: SASL_SSL instead of PLAINTEXT on the data listener.
    security: BrokerSecurity | None = None

    @property
    def cluster_size(self) -> int:
        return max(1, len(self.voters))

    @property
    def marker(self) -> str:
        """A token in the JVM's command line that tells our broker from any other process."""
        return f"-Dstreams.local.broker={self.home.resolve()}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.home / "broker.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "broker.out"


def _quorum(spec: BrokerSpec) -> str:
    voters = spec.voters or ((spec.node_id, spec.controller_port),)
    return ",".join(f"{node}@127.0.0.1:{port}" for node, port in voters)


def _replication(spec: BrokerSpec) -> dict[str, object]:
    """What a cluster of `cluster_size` nodes can promise; a lone node keeps RF 1."""
    if spec.cluster_size == 1:
        return {
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
        }
    rf = min(3, spec.cluster_size)
    isr = min(2, rf)
    return {
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        # Topics created without explicit settings (faust's changelogs, `ensure`) get these.
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "unclean.leader.election.enable": "false",
        # A killed node is fenced (and its partitions re-led) after this, not the 9 s default.
        "broker.session.timeout.ms": 6000,
        "broker.heartbeat.interval.ms": 1000,
    }


def _jaas(user: ScramUser) -> str:
    # Kafka's JAAS syntax: a quoted value may not contain a quote; generated passwords are
    # URL-safe base64, so they never do.
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user.name}" password="{user.password.reveal()}";'
    )


def _listeners(spec: BrokerSpec) -> dict[str, object]:
    controller = f"CONTROLLER://127.0.0.1:{spec.controller_port}"
    sec = spec.security
    if sec is None:
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{spec.port},{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        }
    props: dict[str, object] = {
        "listeners": f"SASL_SSL://127.0.0.1:{spec.port},{controller}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{spec.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISMS[0],
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(sec.keystore.resolve()),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(sec.truststore.resolve()),
        "ssl.client.auth": "none",
    }
    for mechanism in SCRAM_MECHANISMS:
        props[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"] = _jaas(sec.inter_broker)
    return props


def _server_properties(spec: BrokerSpec) -> str:
    data = (spec.home / "data").resolve()
    settings: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": spec.node_id,
        "controller.quorum.voters": _quorum(spec),
        **_listeners(spec),
        "log.dirs": str(data),
        "num.partitions": 1,
        **_replication(spec),
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.num.partitions": 5,
        # A test or demo consumer must not wait 3 s for a first rebalance.
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "true",
        "log.segment.bytes": 64 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "num.network.threads": 2,
        "num.io.threads": 4,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def java_executable() -> str:
    java = shutil.which("java")
    if java is None:
        raise InfraError("java is not on PATH; install a JDK 17 (apt-get install openjdk-17-jdk)")
    return java


def _salted(mechanism: str, password: Secret, salt: bytes) -> bytes:
    """SCRAM's SaltedPassword (RFC 5802: Hi(), i.e. PBKDF2 with the mechanism's HMAC)."""
    digest = "sha512" if mechanism == "SCRAM-SHA-512" else "sha256"
    return hashlib.pbkdf2_hmac(digest, password.reveal().encode(), salt, _SCRAM_ITERATIONS)


def _scram_args(security: BrokerSecurity) -> list[str]:
    """`--add-scram` arguments for every user and mechanism, as salted hashes."""
    args = []
    for user in (security.inter_broker, *security.users):
        for mechanism in SCRAM_MECHANISMS:
            salt = secrets.token_bytes(32)
            salted = base64.b64encode(_salted(mechanism, user.password, salt)).decode()
            args += [
                "--add-scram",
                f"{mechanism}=[name={user.name},iterations={_SCRAM_ITERATIONS},"
                f"salt={base64.b64encode(salt).decode()},saltedpassword={salted}]",
            ]
    return args


def _write_private(path: Path, text: str) -> None:
    # server.properties of a secure node holds the inter-broker password.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def prepare(spec: BrokerSpec, artifacts: Artifacts) -> list[str]:
    """Write the broker's config, format its storage once, and return its command line."""
    spec.home.mkdir(parents=True, exist_ok=True)
    props = spec.home / "server.properties"
    _write_private(props, _server_properties(spec))
    log4j = spec.home / "log4j2.properties"
    log4j.write_text(_LOG4J2.format(log=(spec.home / "server.log").resolve()))
    java = java_executable()
    jvm_common = [
        java,
        "-cp",
        artifacts.kafka_classpath_str,
        f"-Dlog4j2.configurationFile={log4j.resolve()}",
    ]

    if not (spec.home / "data" / "meta.properties").is_file():
        # Every voter of a quorum must be formatted with the same cluster ID.
        cluster_id_file = spec.cluster_id_file or spec.home / "cluster.id"
        if not cluster_id_file.is_file():
            cluster_id_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
        cluster_id = cluster_id_file.read_text().strip()
        fmt = subprocess.run(
            [
                *jvm_common,
                "-Xmx256m",
                "kafka.tools.StorageTool",
                "format",
                # One form: a base64 ID may start with '-', which the option parser would
                # take for an option if passed as a separate argument.
                f"--cluster-id={cluster_id}",
                "-c",
                str(props.resolve()),
                "--ignore-formatted",
                *(_scram_args(spec.security) if spec.security else []),
            ],
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise InfraError(
                f"formatting Kafka storage in {spec.home} failed: {fmt.stdout.strip()} {fmt.stderr.strip()[-300:]}"
            )

    return [
        *jvm_common,
        f"-Xmx{spec.heap_mb}m",
        f"-Xms{min(spec.heap_mb, 256)}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        spec.marker,
        "kafka.Kafka",
        str(props.resolve()),
    ]
