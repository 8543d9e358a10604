"""`streams local up|down|status`: the local Kafka broker (or KRaft cluster) and schema registry."""

from __future__ import annotations

import argparse
import time

from streams.config import Settings
from streams.errors import UnreachableError
from streams.kafka_probe import broker_count
from streams.local import artifacts, registry
from streams.local.stack import LocalStack


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
    fetch.set_defaults(func=_fetch)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    arts = artifacts.resolve()
    print(
        f"kafka {arts.kafka_version} ({len(arts.kafka_classpath)} jars), "
        f"registry {arts.registry_version} ({arts.registry_runner.parent})"
    )
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    info, changed = LocalStack(settings, brokers=args.brokers).up(timeout_s=args.timeout)
    if not args.quiet:
        verb = f"started in {time.monotonic() - started:.1f}s" if changed else "already running"
        pids = ", ".join(str(p) for p in info.broker_pids) or str(info.broker_pid)
        nodes = f"{len(info.broker_pids)} nodes " if len(info.broker_pids) > 1 else ""
        print(
            f"kafka {info.kafka_version} {nodes}at {info.bootstrap} (pid {pids}), "
            f"registry {info.registry_version} at {info.registry_url} (pid {info.registry_pid}): {verb}"
        )
    print(info.exports())
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = LocalStack(settings).down()
    print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    rc = 0
    for state in LocalStack(settings).status():
        if state.running:
            health = "answering" if state.answers else "NOT answering"
            print(f"{state.name:<9} running   pid {state.pid:<8} {state.address}  {health}")
            rc = rc if state.answers else 1
        else:
            print(f"{state.name:<9} stopped")
    # Configured endpoints may point elsewhere than the local stack: probe them too.
    if settings.kafka_bootstrap:
        try:
            n = broker_count(settings.kafka_bootstrap, timeout_s=5.0)
        except UnreachableError as exc:
            raise UnreachableError(
                f"{exc} (STREAMS_KAFKA_BOOTSTRAP); fix it or run `streams local up`"
            ) from None
        print(f"STREAMS_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}: {n} broker(s) answering")
    if settings.schema_registry_url:
        if not registry.answers(settings.schema_registry_url, timeout_s=5.0):
            raise UnreachableError(
                f"no schema registry answers at {settings.schema_registry_url} (STREAMS_SCHEMA_REGISTRY_URL); "
                "fix it or run `streams local up`"
            )
        print(f"STREAMS_SCHEMA_REGISTRY_URL={settings.schema_registry_url}: answering")
    return rc
