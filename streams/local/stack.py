"""`streams local up|down|status`: the broker(s) and registry as one local stack.

A stack has one Kafka node (the default) or a KRaft cluster of N nodes (`--brokers N`),
plus one Apicurio Registry. Its ports and versions live in `<state dir>/local/stack.json`;
each server's PID lives next to its data, and only those PIDs are ever signalled.

A secure stack (`--secure`) adds what a production-like client must get right: Kafka's
data listener is SASL_SSL (SCRAM), the registry serves HTTPS and demands basic auth
(checked by a Keycloak, `streams.local.auth`), and both present certificates of a test CA
made for the stack. The credentials live in `<state dir>/local/secure/` (owner-only
files); a state directory keeps whether it is secure, like its broker count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.errors import AuthError, InfraError, UnreachableError
from streams.kafka_probe import broker_count
from streams.local import artifacts, auth, broker, certs, processes, registry
from streams.secret import Secret
from streams.security import client_config

#: The secure stack's client user (Kafka SCRAM user and registry client ID alike).
CLIENT_USER = "streams"
#: The brokers' own SCRAM user on inter-broker connections.
BROKER_USER = "broker"
SASL_MECHANISM = "SCRAM-SHA-512"


@dataclass
class StackInfo:
    """What `up` reports and `status` reads back."""

    bootstrap: str
    registry_url: str
    kafka_version: str
    registry_version: str
    broker_pid: int
    registry_pid: int
    #: Every node's PID, in node-id order (a single-node stack: `[broker_pid]`).
    broker_pids: list[int] = field(default_factory=list)
    #: The rest is set for a secure stack only. Passwords are files, never values here.
    secure: bool = False
    auth_url: str = ""
    auth_pid: int = 0
    sasl_mechanism: str = ""
    kafka_username: str = ""
    kafka_password_file: str = ""
    registry_username: str = ""
    registry_password_file: str = ""
    ca_file: str = ""

    def exports(self) -> str:
        lines = [
            f"export STREAMS_KAFKA_BOOTSTRAP={self.bootstrap}",
            f"export STREAMS_SCHEMA_REGISTRY_URL={self.registry_url}",
        ]
        if self.secure:
            # Password *files*: the values never reach a terminal, a CI log or a shell's
            # history, and `eval "$(streams local up --secure --quiet)"` stays harmless to print.
            lines += [
                "export STREAMS_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                f"export STREAMS_KAFKA_SASL_MECHANISM={self.sasl_mechanism}",
                f"export STREAMS_KAFKA_SASL_USERNAME={self.kafka_username}",
                f"export STREAMS_KAFKA_SASL_PASSWORD_FILE={self.kafka_password_file}",
                f"export STREAMS_KAFKA_SSL_CAFILE={self.ca_file}",
                f"export STREAMS_SCHEMA_REGISTRY_USERNAME={self.registry_username}",
                f"export STREAMS_SCHEMA_REGISTRY_PASSWORD_FILE={self.registry_password_file}",
                f"export STREAMS_SCHEMA_REGISTRY_CAFILE={self.ca_file}",
            ]
        return "\n".join(lines)


@dataclass(frozen=True)
class Credentials:
    """A secure stack's users, password files and CA, made once per state directory."""

    directory: Path
    ca: certs.LocalCA

    @property
    def kafka_password_file(self) -> Path:
        return self.directory / "kafka.password"

    @property
    def registry_password_file(self) -> Path:
        return self.directory / "registry.password"

    @property
    def broker_password_file(self) -> Path:
        return self.directory / "broker.password"

    @staticmethod
    def _secret(path: Path) -> Secret:
        if not path.is_file():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                # URL-safe base64: no quote or comma that Kafka's JAAS or SCRAM syntax would trip on.
                out.write(secrets.token_urlsafe(24) + "\n")
        return Secret(path.read_text().strip())

    @classmethod
    def ensure(cls, directory: Path) -> Credentials:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        creds = cls(directory, certs.ensure(directory / "tls"))
        for path in (creds.kafka_password_file, creds.registry_password_file, creds.broker_password_file):
            cls._secret(path)
        return creds

    def kafka_password(self) -> Secret:
        return self._secret(self.kafka_password_file)

    def registry_password(self) -> Secret:
        return self._secret(self.registry_password_file)

    def broker_security(self) -> broker.BrokerSecurity:
        return broker.BrokerSecurity(
            keystore=self.ca.server_pem,
            truststore=self.ca.ca_file,
            inter_broker=broker.ScramUser(BROKER_USER, self._secret(self.broker_password_file)),
            users=(broker.ScramUser(CLIENT_USER, self.kafka_password()),),
        )

    def client_settings(self, settings: Settings) -> Settings:
        """`settings` with this stack's credentials (endpoints untouched)."""
        return dataclasses.replace(
            settings,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism=SASL_MECHANISM,
            kafka_sasl_username=CLIENT_USER,
            kafka_sasl_password=self.kafka_password(),
            kafka_ssl_cafile=self.ca.ca_file,
            schema_registry_username=CLIENT_USER,
            schema_registry_password=self.registry_password(),
            schema_registry_cafile=self.ca.ca_file,
        )


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    answers: bool
    address: str


@dataclass(frozen=True)
class _Layout:
    """The ports a stack was given: one (kafka, controller) pair per node, and the registry's."""

    nodes: tuple[tuple[int, int], ...]
    registry: int
    #: The auth server's port (a secure stack only).
    auth: int | None = None


class LocalStack:
    """The local broker(s) and registry under one state directory.

    `brokers` is the number of Kafka nodes wanted; None means "whatever this state
    directory already has, else 1". A state directory keeps its node count: asking a
    one-node stack for three is an error (use another STREAMS_STATE_DIR).
    """

    def __init__(self, settings: Settings, brokers: int | None = None, secure: bool | None = None) -> None:
        if brokers is not None and brokers < 1:
            raise InfraError(f"--brokers {brokers}: a stack needs at least one broker")
        self.settings = settings
        self.home = (settings.state_dir / "local").resolve()
        self.stack_file = self.home / "stack.json"
        self._wanted = brokers
        self._wanted_secure = secure

    # -- layout -----------------------------------------------------------------
    def _saved(self) -> _Layout | None:
        try:
            ports: dict[str, Any] = json.loads(self.stack_file.read_text()).get("ports", {})
            registry_port = int(ports["registry"])
            if "nodes" in ports:
                nodes = tuple((int(n["kafka"]), int(n["controller"])) for n in ports["nodes"])
            else:
                nodes = ((int(ports["kafka"]), int(ports["controller"])),)
            auth_port = int(ports["auth"]) if ports.get("auth") else None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return _Layout(nodes, registry_port, auth_port)

    @property
    def secure(self) -> bool:
        """Whether this stack is (or will be) the secure kind."""
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return bool(self._wanted_secure)
        if isinstance(data, dict) and "secure" in data:
            return bool(data["secure"])
        # A stack.json from before secure stacks existed describes a plaintext stack.
        return False if isinstance(data, dict) and "ports" in data else bool(self._wanted_secure)

    def credentials(self) -> Credentials:
        """The secure stack's credentials (created on first use)."""
        return Credentials.ensure(self.home / "secure")

    def client_settings(self, settings: Settings | None = None) -> Settings:
        """Settings that reach this stack: its endpoints and, if secure, its credentials."""
        base = settings or self.settings
        saved = self._saved()
        if saved is not None:
            specs = self._broker_specs(saved)
            base = dataclasses.replace(
                base,
                kafka_bootstrap=self._bootstrap(specs),
                schema_registry_url=self._registry_spec(saved).url,
            )
        return self.credentials().client_settings(base) if self.secure else base

    def _kafka_client_config(self) -> dict[str, Any]:
        return client_config(self.credentials().client_settings(self.settings)) if self.secure else {}

    @property
    def brokers(self) -> int:
        """How many Kafka nodes this stack has (or will have)."""
        saved = self._saved()
        if saved is not None:
            return len(saved.nodes)
        return self._wanted or 1

    def _pick_port(self, configured: int, saved: int | None, taken: set[int]) -> int:
        if configured:
            if not processes.port_is_free(configured):
                raise InfraError(
                    f"port {configured} is taken; choose another STREAMS_LOCAL_*_PORT or 0 for a free one"
                )
            return configured
        if saved and saved not in taken and processes.port_is_free(saved):
            return saved
        port = processes.free_port()
        while port in taken:
            port = processes.free_port()
        return port

    def _broker_specs(self, layout: _Layout) -> list[broker.BrokerSpec]:
        heap = self.settings.local_kafka_heap_mb
        security = self.credentials().broker_security() if self.secure else None
        if len(layout.nodes) == 1:
            # The single-node layout predates clusters: keep its directory and own cluster ID.
            port, controller = layout.nodes[0]
            return [broker.BrokerSpec(self.home / "kafka", port, controller, heap, security=security)]
        voters = tuple((i, controller) for i, (_, controller) in enumerate(layout.nodes, start=1))
        return [
            broker.BrokerSpec(
                self.home / f"kafka-{i}",
                port,
                controller,
                heap,
                node_id=i,
                voters=voters,
                cluster_id_file=self.home / "cluster.id",
                security=security,
            )
            for i, (port, controller) in enumerate(layout.nodes, start=1)
        ]

    def _auth_spec(self, layout: _Layout) -> auth.AuthSpec | None:
        if layout.auth is None:
            return None
        return auth.AuthSpec(self.home / "auth", layout.auth)

    def _registry_spec(self, layout: _Layout) -> registry.RegistrySpec:
        security = None
        auth_spec = self._auth_spec(layout)
        if self.secure and auth_spec is not None:
            ca = self.credentials().ca
            security = registry.RegistrySecurity(ca.server_cert, ca.server_key, ca.ca_file, auth_spec.url)
        return registry.RegistrySpec(
            self.home / "registry", layout.registry, self.settings.local_registry_heap_mb, security
        )

    def _registry_answers(self, spec: registry.RegistrySpec, timeout_s: float = 1.0) -> bool:
        if spec.security is None:
            return registry.answers(spec.url, timeout_s)
        creds = self.credentials()
        return registry.answers(
            spec.url,
            timeout_s,
            username=CLIENT_USER,
            password=creds.registry_password(),
            ca_file=creds.ca.ca_file,
        )

    def _names(self, count: int) -> list[str]:
        return ["kafka"] if count == 1 else [f"kafka-{i}" for i in range(1, count + 1)]

    def _service_names(self, count: int) -> list[str]:
        return [*self._names(count), *(["auth"] if self.secure else []), "registry"]

    @staticmethod
    def _bootstrap(specs: list[broker.BrokerSpec]) -> str:
        return ",".join(spec.bootstrap for spec in specs)

    # -- status -----------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        saved = self._saved()
        if saved is None:
            return [
                ServiceStatus(name, None, False, False, "-") for name in self._service_names(self.brokers)
            ]
        result = []
        for name, spec in zip(self._names(len(saved.nodes)), self._broker_specs(saved), strict=True):
            pid = processes.read_pid(spec.pidfile)
            running = pid is not None and processes.pid_alive(pid, spec.marker)
            result.append(
                ServiceStatus(
                    name,
                    pid if running else None,
                    running,
                    running and processes.port_answers(spec.port),
                    spec.bootstrap,
                )
            )
        auth_spec = self._auth_spec(saved)
        if self.secure:
            apid = processes.read_pid(auth_spec.pidfile) if auth_spec else None
            a_running = (
                auth_spec is not None and apid is not None and processes.pid_alive(apid, auth_spec.marker)
            )
            result.append(
                ServiceStatus(
                    "auth",
                    apid if a_running else None,
                    a_running,
                    a_running and auth_spec is not None and auth.answers(auth_spec),
                    auth_spec.url if auth_spec else "-",
                )
            )
        registry_spec = self._registry_spec(saved)
        rpid = processes.read_pid(registry_spec.pidfile)
        r_running = rpid is not None and processes.pid_alive(rpid, registry_spec.marker)
        result.append(
            ServiceStatus(
                "registry",
                rpid if r_running else None,
                r_running,
                r_running and self._registry_answers(registry_spec),
                registry_spec.url,
            )
        )
        return result

    def info(self) -> StackInfo | None:
        """The running stack, or None if any server is down."""
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return None
        states = self.status()
        if not all(s.running for s in states):
            return None
        info = dict(data["info"])
        info.setdefault("broker_pids", [info.get("broker_pid", 0)])
        return StackInfo(**info)

    def broker_pid(self, node: int) -> int | None:
        """The PID of node `node` (1-based) if it runs (checked against its command line)."""
        saved = self._saved()
        if saved is None or not 1 <= node <= len(saved.nodes):
            return None
        spec = self._broker_specs(saved)[node - 1]
        pid = processes.read_pid(spec.pidfile)
        return pid if pid is not None and processes.pid_alive(pid, spec.marker) else None

    def signal_broker(self, node: int, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to node `node` (fault injection); returns its PID. `up()` restarts it."""
        pid = self.broker_pid(node)
        if pid is None:
            raise InfraError(f"broker node {node} of {self.home} is not running")
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            saved = self._saved()
            assert saved is not None
            marker = self._broker_specs(saved)[node - 1].marker
            while processes.pid_alive(pid, marker):
                time.sleep(0.05)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        return pid

    # -- up / down --------------------------------------------------------------
    def _check_kind(self) -> None:
        """A state directory keeps its kind: `--secure` on a plaintext one is an error."""
        if self._wanted_secure is not None and self._wanted_secure != self.secure:
            kind, other = ("secure", "plaintext") if self.secure else ("plaintext", "secure")
            raise InfraError(
                f"the stack in {self.home} is a {kind} one; use another STREAMS_STATE_DIR for a "
                f"{other} stack (or `streams local down` and remove it)"
            )

    def _layout_for_up(self, states: dict[str, ServiceStatus]) -> _Layout:
        saved = self._saved()
        count = len(saved.nodes) if saved else (self._wanted or 1)
        if saved and self._wanted is not None and self._wanted != count:
            raise InfraError(
                f"the stack in {self.home} has {count} broker(s), not {self._wanted}; "
                "use another STREAMS_STATE_DIR (or `streams local down` and remove it)"
            )
        names = self._names(count)
        taken: set[int] = set()
        nodes: list[tuple[int, int]] = []
        for i, name in enumerate(names):
            old = saved.nodes[i] if saved else None
            if old and (states[name].running or count > 1):
                # A running node keeps its ports; so does every node of a quorum, whose
                # voters' controller ports are written into each node's config.
                nodes.append(old)
            else:
                configured = self.settings.local_kafka_port if i == 0 else 0
                kafka = self._pick_port(configured, old[0] if old else None, taken)
                controller = self._pick_port(0, old[1] if old else None, taken | {kafka})
                nodes.append((kafka, controller))
            taken.update(nodes[-1])
        if saved and states["registry"].running:
            registry_port = saved.registry
        else:
            registry_port = self._pick_port(
                self.settings.local_registry_port, saved.registry if saved else None, taken
            )
        taken.add(registry_port)
        auth_port = None
        if self.secure:
            if saved and saved.auth and states["auth"].running:
                auth_port = saved.auth
            else:
                auth_port = self._pick_port(0, saved.auth if saved else None, taken)
        return _Layout(tuple(nodes), registry_port, auth_port)

    def up(self, timeout_s: float = 180.0) -> tuple[StackInfo, bool]:
        """Start whatever is not running; returns (info, started_anything)."""
        if self._saved() is not None:
            self._check_kind()
        current = self.info()
        if current is not None and all(s.answers for s in self.status()):
            if self._wanted is not None and len(current.broker_pids) != self._wanted:
                raise InfraError(
                    f"the stack in {self.home} runs {len(current.broker_pids)} broker(s), not "
                    f"{self._wanted}; use another STREAMS_STATE_DIR"
                )
            return current, False

        if self._saved() is None and self._wanted_secure:
            # A new secure stack: say so before anything reads `self.secure`.
            self.home.mkdir(parents=True, exist_ok=True)
            self.stack_file.write_text(json.dumps({"secure": True}))
        arts = artifacts.resolve()
        auth_server = artifacts.resolve_auth_server() if self.secure else None
        self.home.mkdir(parents=True, exist_ok=True)
        states = {s.name: s for s in self.status()}
        layout = self._layout_for_up(states)
        broker_specs = self._broker_specs(layout)
        auth_spec = self._auth_spec(layout)
        registry_spec = self._registry_spec(layout)
        names = self._names(len(broker_specs))
        self._write(layout, broker_specs, registry_spec, arts, None, None, auth_spec, None)

        # All nodes start together: each waits for a quorum of the others.
        for name, spec in zip(names, broker_specs, strict=True):
            if not states[name].running:
                argv = broker.prepare(spec, arts)
                processes.spawn(argv, spec.logfile, spec.pidfile, spec.home)
        deadline = time.monotonic() + timeout_s
        apid = None
        if auth_spec is not None and auth_server is not None:
            # The registry asks the auth server for its signing keys as it starts: the auth
            # server first (it starts while the brokers do).
            if not states["auth"].running:
                clients = [(CLIENT_USER, self.credentials().registry_password())]
                argv, env = auth.command(auth_spec, auth_server, clients)
                processes.spawn(argv, auth_spec.logfile, auth_spec.pidfile, auth_spec.home, env)
            apid = processes.read_pid(auth_spec.pidfile) or 0
            spec_a = auth_spec
            if not processes.wait_until(
                lambda: auth.answers(spec_a),
                deadline - time.monotonic(),
                lambda: processes.pid_alive(apid or 0, spec_a.marker),
            ):
                raise InfraError(
                    f"the auth server did not start on {auth_spec.url}; see {auth_spec.home / 'auth.log'}"
                )
        if not states["registry"].running:
            argv, env = registry.command(registry_spec, arts)
            processes.spawn(argv, registry_spec.logfile, registry_spec.pidfile, registry_spec.home, env)

        bpids = [processes.read_pid(spec.pidfile) or 0 for spec in broker_specs]
        rpid = processes.read_pid(registry_spec.pidfile) or 0
        bootstrap = self._bootstrap(broker_specs)
        security = self._kafka_client_config()

        def brokers_ready() -> bool:
            # Each node answers on its own port and sees all nodes: a restarted node is
            # serving, and the cluster still listing a killed node's stale registration
            # (until its session times out) does not count as ready.
            try:
                return all(
                    broker_count(spec.bootstrap, timeout_s=2.0, extra=security) >= len(broker_specs)
                    for spec in broker_specs
                )
            except (UnreachableError, AuthError):
                # A node still loading its metadata may not know the SCRAM users yet.
                return False

        def brokers_alive() -> bool:
            return all(processes.pid_alive(p, s.marker) for p, s in zip(bpids, broker_specs, strict=True))

        if not processes.wait_until(brokers_ready, deadline - time.monotonic(), brokers_alive):
            logs = ", ".join(str(s.home / "server.log") for s in broker_specs)
            raise InfraError(f"Kafka did not start on {bootstrap}; see {logs}")
        if not processes.wait_until(
            lambda: self._registry_answers(registry_spec),
            deadline - time.monotonic(),
            lambda: processes.pid_alive(rpid, registry_spec.marker),
        ):
            raise InfraError(
                f"the schema registry did not start on {registry_spec.url}; see {registry_spec.logfile}"
            )
        info = self._write(layout, broker_specs, registry_spec, arts, bpids, rpid, auth_spec, apid)
        assert info is not None
        return info, True

    def _write(
        self,
        layout: _Layout,
        broker_specs: list[broker.BrokerSpec],
        registry_spec: registry.RegistrySpec,
        arts: artifacts.Artifacts,
        bpids: list[int] | None,
        rpid: int | None,
        auth_spec: auth.AuthSpec | None = None,
        apid: int | None = None,
    ) -> StackInfo | None:
        pids = bpids or [0] * len(broker_specs)
        info = StackInfo(
            bootstrap=self._bootstrap(broker_specs),
            registry_url=registry_spec.url,
            kafka_version=arts.kafka_version,
            registry_version=arts.registry_version,
            broker_pid=pids[0],
            registry_pid=rpid or 0,
            broker_pids=pids,
        )
        if self.secure:
            creds = self.credentials()
            info = dataclasses.replace(
                info,
                secure=True,
                auth_url=auth_spec.url if auth_spec else "",
                auth_pid=apid or 0,
                sasl_mechanism=SASL_MECHANISM,
                kafka_username=CLIENT_USER,
                kafka_password_file=str(creds.kafka_password_file),
                registry_username=CLIENT_USER,
                registry_password_file=str(creds.registry_password_file),
                ca_file=str(creds.ca.ca_file),
            )
        first_port, first_controller = layout.nodes[0]
        ports: dict[str, Any] = {
            "kafka": first_port,
            "controller": first_controller,
            "registry": layout.registry,
        }
        if len(layout.nodes) > 1:
            ports["nodes"] = [{"kafka": k, "controller": c} for k, c in layout.nodes]
        if layout.auth is not None:
            ports["auth"] = layout.auth
        data = {"ports": ports, "secure": self.secure, "info": asdict(info)}
        tmp = self.stack_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.stack_file)
        complete = all(pids) and rpid and (apid or not self.secure)
        return info if complete else None

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started; returns what was stopped."""
        saved = self._saved()
        if saved is None:
            return []
        stopped = []
        # The registry first: its storage is its own, but clients of it may still be
        # talking to the broker. Then the auth server, which only the registry uses.
        registry_spec = self._registry_spec(saved)
        pid = processes.read_pid(registry_spec.pidfile)
        if pid is not None and processes.stop(pid, registry_spec.marker):
            stopped.append(f"registry (pid {pid})")
        registry_spec.pidfile.unlink(missing_ok=True)
        auth_spec = self._auth_spec(saved)
        if auth_spec is not None:
            pid = processes.read_pid(auth_spec.pidfile)
            if pid is not None and processes.stop(pid, auth_spec.marker):
                stopped.append(f"auth (pid {pid})")
            auth_spec.pidfile.unlink(missing_ok=True)

        specs = self._broker_specs(saved)
        targets = []
        for name, spec in zip(self._names(len(specs)), specs, strict=True):
            pid = processes.read_pid(spec.pidfile)
            if pid is not None:
                targets.append((name, pid, spec))
        ran = set(processes.stop_many([(pid, spec.marker) for _, pid, spec in targets]))
        for name, pid, spec in targets:
            if pid in ran:
                stopped.append(f"{name} (pid {pid})")
            spec.pidfile.unlink(missing_ok=True)
        return stopped


def default_home(settings: Settings) -> Path:
    return (settings.state_dir / "local").resolve()
