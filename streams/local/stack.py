"""`streams local up|down|status`: the broker(s) and registry as one local stack.

A stack has one Kafka node (the default) or a KRaft cluster of N nodes (`--brokers N`),
plus one Apicurio Registry. Its ports and versions live in `<state dir>/local/stack.json`;
each server's PID lives next to its data, and only those PIDs are ever signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.errors import InfraError, UnreachableError
from streams.kafka_probe import broker_count
from streams.local import artifacts, broker, processes, registry


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

    def exports(self) -> str:
        return (
            f"export STREAMS_KAFKA_BOOTSTRAP={self.bootstrap}\n"
            f"export STREAMS_SCHEMA_REGISTRY_URL={self.registry_url}"
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


class LocalStack:
    """The local broker(s) and registry under one state directory.

    `brokers` is the number of Kafka nodes wanted; None means "whatever this state
    directory already has, else 1". A state directory keeps its node count: asking a
    one-node stack for three is an error (use another STREAMS_STATE_DIR).
    """

    def __init__(self, settings: Settings, brokers: int | None = None) -> None:
        if brokers is not None and brokers < 1:
            raise InfraError(f"--brokers {brokers}: a stack needs at least one broker")
        self.settings = settings
        self.home = (settings.state_dir / "local").resolve()
        self.stack_file = self.home / "stack.json"
        self._wanted = brokers

    # -- layout -----------------------------------------------------------------
    def _saved(self) -> _Layout | None:
        try:
            ports: dict[str, Any] = json.loads(self.stack_file.read_text()).get("ports", {})
            registry_port = int(ports["registry"])
            if "nodes" in ports:
                nodes = tuple((int(n["kafka"]), int(n["controller"])) for n in ports["nodes"])
            else:
                nodes = ((int(ports["kafka"]), int(ports["controller"])),)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return _Layout(nodes, registry_port)

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
        if len(layout.nodes) == 1:
            # The single-node layout predates clusters: keep its directory and own cluster ID.
            port, controller = layout.nodes[0]
            return [broker.BrokerSpec(self.home / "kafka", port, controller, heap)]
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
            )
            for i, (port, controller) in enumerate(layout.nodes, start=1)
        ]

    def _registry_spec(self, port: int) -> registry.RegistrySpec:
        return registry.RegistrySpec(self.home / "registry", port, self.settings.local_registry_heap_mb)

    def _names(self, count: int) -> list[str]:
        return ["kafka"] if count == 1 else [f"kafka-{i}" for i in range(1, count + 1)]

    @staticmethod
    def _bootstrap(specs: list[broker.BrokerSpec]) -> str:
        return ",".join(spec.bootstrap for spec in specs)

    # -- status -----------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        saved = self._saved()
        if saved is None:
            return [ServiceStatus(name, None, False, False, "-") for name in self._names(self.brokers)] + [
                ServiceStatus("registry", None, False, False, "-")
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
        registry_spec = self._registry_spec(saved.registry)
        rpid = processes.read_pid(registry_spec.pidfile)
        r_running = rpid is not None and processes.pid_alive(rpid, registry_spec.marker)
        result.append(
            ServiceStatus(
                "registry",
                rpid if r_running else None,
                r_running,
                r_running and registry.answers(registry_spec.url),
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
        return _Layout(tuple(nodes), registry_port)

    def up(self, timeout_s: float = 180.0) -> tuple[StackInfo, bool]:
        """Start whatever is not running; returns (info, started_anything)."""
        current = self.info()
        if current is not None and all(s.answers for s in self.status()):
            if self._wanted is not None and len(current.broker_pids) != self._wanted:
                raise InfraError(
                    f"the stack in {self.home} runs {len(current.broker_pids)} broker(s), not "
                    f"{self._wanted}; use another STREAMS_STATE_DIR"
                )
            return current, False

        arts = artifacts.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        states = {s.name: s for s in self.status()}
        layout = self._layout_for_up(states)
        broker_specs = self._broker_specs(layout)
        registry_spec = self._registry_spec(layout.registry)
        names = self._names(len(broker_specs))
        self._write(layout, broker_specs, registry_spec, arts, None, None)

        # All nodes start together: each waits for a quorum of the others.
        for name, spec in zip(names, broker_specs, strict=True):
            if not states[name].running:
                argv = broker.prepare(spec, arts)
                processes.spawn(argv, spec.logfile, spec.pidfile, spec.home)
        if not states["registry"].running:
            argv, env = registry.command(registry_spec, arts)
            processes.spawn(argv, registry_spec.logfile, registry_spec.pidfile, registry_spec.home, env)

        bpids = [processes.read_pid(spec.pidfile) or 0 for spec in broker_specs]
        rpid = processes.read_pid(registry_spec.pidfile) or 0
        bootstrap = self._bootstrap(broker_specs)
        deadline = time.monotonic() + timeout_s

        def brokers_ready() -> bool:
            # Each node answers on its own port and sees all nodes: a restarted node is
            # serving, and the cluster still listing a killed node's stale registration
            # (until its session times out) does not count as ready.
            try:
                return all(
                    broker_count(spec.bootstrap, timeout_s=2.0) >= len(broker_specs) for spec in broker_specs
                )
            except UnreachableError:
                return False

        def brokers_alive() -> bool:
            return all(processes.pid_alive(p, s.marker) for p, s in zip(bpids, broker_specs, strict=True))

        if not processes.wait_until(brokers_ready, deadline - time.monotonic(), brokers_alive):
            logs = ", ".join(str(s.home / "server.log") for s in broker_specs)
            raise InfraError(f"Kafka did not start on {bootstrap}; see {logs}")
        if not processes.wait_until(
            lambda: registry.answers(registry_spec.url),
            deadline - time.monotonic(),
            lambda: processes.pid_alive(rpid, registry_spec.marker),
        ):
            raise InfraError(
                f"the schema registry did not start on {registry_spec.url}; see {registry_spec.logfile}"
            )
        info = self._write(layout, broker_specs, registry_spec, arts, bpids, rpid)
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
        first_port, first_controller = layout.nodes[0]
        ports: dict[str, Any] = {
            "kafka": first_port,
            "controller": first_controller,
            "registry": layout.registry,
        }
        if len(layout.nodes) > 1:
            ports["nodes"] = [{"kafka": k, "controller": c} for k, c in layout.nodes]
        data = {"ports": ports, "info": asdict(info)}
        tmp = self.stack_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.stack_file)
        return info if all(pids) and rpid else None

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started; returns what was stopped."""
        saved = self._saved()
        if saved is None:
            return []
        stopped = []
        # The registry first: its storage is its own, but clients of it may still be
        # talking to the broker.
        registry_spec = self._registry_spec(saved.registry)
        pid = processes.read_pid(registry_spec.pidfile)
        if pid is not None and processes.stop(pid, registry_spec.marker):
            stopped.append(f"registry (pid {pid})")
        registry_spec.pidfile.unlink(missing_ok=True)

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
