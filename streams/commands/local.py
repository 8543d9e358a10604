"""`streams local up|down|status`: the local Kafka broker (or KRaft cluster) and schema registry."""

from __future__ import annotations

import argparse
import time

from streams.config import Settings
from streams.errors import UnreachableError
from streams.kafka_probe import broker_count
from streams.local import artifacts
from streams.local.stack import LocalStack
from streams.schema_registry import RegistryUnavailable
from streams.security import client_config, registry_client


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    local = sub.add_parser(
        "local",
        help="run a real Kafka broker and schema registry on loopback (no Docker)",
        description="Start, stop and inspect a local Kafka broker (KRaft) and Apicurio Registry. "
        "Data lives under $STREAMS_STATE_DIR/local.",
    )
    actions = local.add_subparsers(dest="action", metavar="{up,down,status,fetch}", required=True)
    up = actions.add_parser("up", help="start the broker and registry (a no-op if they run)")
    up.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds to wait for both to answer",
    )
    up.add_argument(
        "--brokers",
        type=int,
        default=None,
        metavar="N",
        help="Kafka nodes: 1 (default) or a KRaft cluster of N (replication factor 3, "
        "min.insync.replicas 2 for N >= 3); a state directory keeps its count",
    )
    up.add_argument(
        "--secure",
        action="store_true",
        help="SASL_SSL (SCRAM) Kafka, an HTTPS registry with basic auth (plus a Keycloak it checks "
        "them with), certificates of a test CA; prints the variables a client needs (passwords as "
        "files); a state directory keeps its kind",
    )
    up.add_argument("--quiet", action="store_true", help="print only the export lines")
    up.set_defaults(func=_up)
    down = actions.add_parser("down", help="stop the processes `up` started")
    down.set_defaults(func=_down)
    status = actions.add_parser(
        "status",
        help="say what runs, and probe STREAMS_KAFKA_BOOTSTRAP / STREAMS_SCHEMA_REGISTRY_URL",
    )
    status.set_defaults(func=_status)
    fetch = actions.add_parser("fetch", help="download the broker and registry from Maven Central (cached)")
    fetch.add_argument("--secure", action="store_true", help="also the auth server `up --secure` needs")
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    arts = artifacts.resolve()
    print(
        f"kafka {arts.kafka_version} ({len(arts.kafka_classpath)} jars), "
        f"registry {arts.registry_version} ({arts.registry_runner.parent})"
    )
    if args.secure:
        server = artifacts.resolve_auth_server()
        print(f"auth server: keycloak {server.version} ({server.home})")
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    secure = True if args.secure else None  # without the flag: whatever the state dir has
    info, changed = LocalStack(settings, brokers=args.brokers, secure=secure).up(timeout_s=args.timeout)
    if not args.quiet:
        verb = f"started in {time.monotonic() - started:.1f}s" if changed else "already running"
        pids = ", ".join(str(p) for p in info.broker_pids) or str(info.broker_pid)
        nodes = f"{len(info.broker_pids)} nodes " if len(info.broker_pids) > 1 else ""
        auth = f", auth server at {info.auth_url} (pid {info.auth_pid})" if info.secure else ""
        kind = "SASL_SSL " if info.secure else ""
        print(
            f"kafka {info.kafka_version} {nodes}{kind}at {info.bootstrap} (pid {pids}), "
            f"registry {info.registry_version} at {info.registry_url} (pid {info.registry_pid}){auth}: {verb}"
        )
    print(info.exports())
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = LocalStack(settings).down()
    print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    rc = 0
    stack = LocalStack(settings)
    for state in stack.status():
        if state.running:
            health = "answering" if state.answers else "NOT answering"
            print(f"{state.name:<9} running   pid {state.pid:<8} {state.address}  {health}")
            rc = rc if state.answers else 1
        else:
            print(f"{state.name:<9} stopped")
    info = stack.info()
    if info is not None:
        print("# a client of this stack needs:")
        print(info.exports())
    # Configured endpoints may point elsewhere than the local stack: probe them too.
    if settings.kafka_bootstrap:
        try:
            n = broker_count(settings.kafka_bootstrap, timeout_s=5.0, extra=client_config(settings))
        except UnreachableError as exc:
            raise UnreachableError(
                f"{exc} (STREAMS_KAFKA_BOOTSTRAP); fix it or run `streams local up`"
            ) from None
        print(f"STREAMS_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: {n} broker(s) answering")
    if settings.schema_registry_url:
        try:
            # A refused login or TLS failure raises its own one-line error.
            registry_client(settings, timeout_s=5.0).subjects()
        except RegistryUnavailable as exc:
            # Its message names the variable and the fix already.
            raise UnreachableError(str(exc)) from None
        print(f"STREAMS_SCHEMA_REGISTRY_URL={settings.schema_registry_url}: answering")
    return rc
