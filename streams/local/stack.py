"""`streams local up|down|status`: the broker and registry as one local stack.

The stack's ports and versions live in `<state dir>/local/stack.json`; each server's
PID lives next to its data, and only those PIDs are ever signalled.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

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


class LocalStack:
    """The local broker and registry under one state directory."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = (settings.state_dir / "local").resolve()
        self.stack_file = self.home / "stack.json"

    # -- layout -----------------------------------------------------------------
    def _saved(self) -> dict[str, int]:
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return {}
        return {k: int(v) for k, v in data.get("ports", {}).items()}

    def _pick_port(self, configured: int, saved: int | None) -> int:
        if configured:
            if not processes.port_is_free(configured):
                raise InfraError(
                    f"port {configured} is taken; choose another STREAMS_LOCAL_*_PORT or 0 for a free one"
                )
            return configured
        if saved and processes.port_is_free(saved):
            return saved
        return processes.free_port()

    def _broker_spec(self, port: int, controller_port: int) -> broker.BrokerSpec:
        return broker.BrokerSpec(
            self.home / "kafka", port, controller_port, self.settings.local_kafka_heap_mb
        )

    def _registry_spec(self, port: int) -> registry.RegistrySpec:
        return registry.RegistrySpec(self.home / "registry", port, self.settings.local_registry_heap_mb)

    def _specs_from_file(self) -> tuple[broker.BrokerSpec, registry.RegistrySpec] | None:
        saved = self._saved()
        if not {"kafka", "controller", "registry"} <= saved.keys():
            return None
        return (
            self._broker_spec(saved["kafka"], saved["controller"]),
            self._registry_spec(saved["registry"]),
        )

    # -- status -----------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        specs = self._specs_from_file()
        if specs is None:
            return [
                ServiceStatus("kafka", None, False, False, "-"),
                ServiceStatus("registry", None, False, False, "-"),
            ]
        broker_spec, registry_spec = specs
        bpid = processes.read_pid(broker_spec.pidfile)
        rpid = processes.read_pid(registry_spec.pidfile)
        b_running = bpid is not None and processes.pid_alive(bpid, broker_spec.marker)
        r_running = rpid is not None and processes.pid_alive(rpid, registry_spec.marker)
        return [
            ServiceStatus(
                "kafka",
                bpid if b_running else None,
                b_running,
                b_running and processes.port_answers(broker_spec.port),
                broker_spec.bootstrap,
            ),
            ServiceStatus(
                "registry",
                rpid if r_running else None,
                r_running,
                r_running and registry.answers(registry_spec.url),
                registry_spec.url,
            ),
        ]

    def info(self) -> StackInfo | None:
        """The running stack, or None if either server is down."""
        try:
            data = json.loads(self.stack_file.read_text())
        except (OSError, ValueError):
            return None
        states = self.status()
        if not all(s.running for s in states):
            return None
        return StackInfo(**data["info"])

    # -- up / down --------------------------------------------------------------
    def up(self, timeout_s: float = 180.0) -> tuple[StackInfo, bool]:
        """Start whatever is not running; returns (info, started_anything)."""
        current = self.info()
        if current is not None and all(s.answers for s in self.status()):
            return current, False

        arts = artifacts.resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        saved = self._saved()
        existing = self._specs_from_file()
        states = {s.name: s for s in self.status()}

        if existing and states["kafka"].running:
            broker_spec = existing[0]
        else:
            kafka_port = self._pick_port(self.settings.local_kafka_port, saved.get("kafka"))
            controller_port = self._pick_port(0, saved.get("controller"))
            while controller_port == kafka_port:
                controller_port = processes.free_port()
            broker_spec = self._broker_spec(kafka_port, controller_port)
        if existing and states["registry"].running:
            registry_spec = existing[1]
        else:
            registry_port = self._pick_port(self.settings.local_registry_port, saved.get("registry"))
            while registry_port in (broker_spec.port, broker_spec.controller_port):
                registry_port = processes.free_port()
            registry_spec = self._registry_spec(registry_port)

        self._write(broker_spec, registry_spec, arts, None, None)

        if not states["kafka"].running:
            argv = broker.prepare(broker_spec, arts)
            processes.spawn(argv, broker_spec.logfile, broker_spec.pidfile, broker_spec.home)
        if not states["registry"].running:
            argv, env = registry.command(registry_spec, arts)
            processes.spawn(argv, registry_spec.logfile, registry_spec.pidfile, registry_spec.home, env)

        bpid = processes.read_pid(broker_spec.pidfile) or 0
        rpid = processes.read_pid(registry_spec.pidfile) or 0
        deadline = time.monotonic() + timeout_s

        def broker_ready() -> bool:
            try:
                return broker_count(broker_spec.bootstrap, timeout_s=2.0) >= 1
            except UnreachableError:
                return False

        if not processes.wait_until(
            broker_ready,
            deadline - time.monotonic(),
            lambda: processes.pid_alive(bpid, broker_spec.marker),
        ):
            raise InfraError(
                f"Kafka did not start on {broker_spec.bootstrap}; see {broker_spec.home / 'server.log'}"
            )
        if not processes.wait_until(
            lambda: registry.answers(registry_spec.url),
            deadline - time.monotonic(),
            lambda: processes.pid_alive(rpid, registry_spec.marker),
        ):
            raise InfraError(
                f"the schema registry did not start on {registry_spec.url}; see {registry_spec.logfile}"
            )
        info = self._write(broker_spec, registry_spec, arts, bpid, rpid)
        assert info is not None
        return info, True

    def _write(
        self,
        broker_spec: broker.BrokerSpec,
        registry_spec: registry.RegistrySpec,
        arts: artifacts.Artifacts,
        bpid: int | None,
        rpid: int | None,
    ) -> StackInfo | None:
        info = StackInfo(
            bootstrap=broker_spec.bootstrap,
            registry_url=registry_spec.url,
            kafka_version=arts.kafka_version,
            registry_version=arts.registry_version,
            broker_pid=bpid or 0,
            registry_pid=rpid or 0,
        )
        data = {
            "ports": {
                "kafka": broker_spec.port,
                "controller": broker_spec.controller_port,
                "registry": registry_spec.port,
            },
            "info": asdict(info),
        }
        tmp = self.stack_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.stack_file)
        return info if bpid and rpid else None

    def down(self) -> list[str]:
        """Stop exactly the processes this stack started; returns what was stopped."""
        specs = self._specs_from_file()
        if specs is None:
            return []
        stopped = []
        broker_spec, registry_spec = specs
        # The registry first: its storage is its own, but clients of it may still be
        # talking to the broker.
        for name, spec in (("registry", registry_spec), ("kafka", broker_spec)):
            pid = processes.read_pid(spec.pidfile)
            if pid is not None and processes.stop(pid, spec.marker):
                stopped.append(f"{name} (pid {pid})")
            spec.pidfile.unlink(missing_ok=True)
        return stopped


def default_home(settings: Settings) -> Path:
    return (settings.state_dir / "local").resolve()
