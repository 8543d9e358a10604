"""`streams topics create|describe`: the app's topics with the configuration it declares."""

from __future__ import annotations

import argparse
import json

from streams.app import load_app
from streams.commands._common import add_app, add_workspace, kafka, settings_for
from streams.config import Settings
from streams.security import client_config
from streams.topics import admin, create, declared, describe


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser(
        "topics",
        help="create the app's topics, or describe them and any drift from the declared config",
        description="Sources, retry, DLQ, status, ledger changelogs and replay markers, with "
        "partitions (STREAMS_PARTITIONS), replication factor (STREAMS_REPLICATION_FACTOR), "
        "min.insync.replicas (STREAMS_MIN_INSYNC_REPLICAS) and cleanup policy: compacted "
        "changelogs and markers, retention (STREAMS_RETENTION_MS) for the rest.",
    )
    actions = topics.add_subparsers(dest="action", metavar="{create,describe}", required=True)
    make = actions.add_parser(
        "create", help="create every missing topic (idempotent; existing ones untouched)"
    )
    show = actions.add_parser("describe", help="each topic as the cluster has it; exit 1 on drift or missing")
    show.add_argument("--json", action="store_true", help="one JSON object per topic")
    for parser in (make, show):
        add_app(parser)
        add_workspace(parser)
    make.set_defaults(func=_create)
    show.set_defaults(func=_describe)


def _create(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings_for(args, settings)
    client = admin(kafka(settings), client_config(settings))
    specs = declared(load_app(settings.app), settings)
    created = create(client, specs)
    for spec in specs:
        print(f"{'created' if created[spec.name] else 'exists '}  {spec.name}")
    states = describe(client, specs)
    drifted = [s for s in states if s.drift]
    made = sum(created.values())
    print(f"{made} created, {len(specs) - made} already existed", end="")
    print(
        f"; {len(drifted)} differ from the declared config (see `streams topics describe`)" if drifted else ""
    )
    return 0


def _describe(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings_for(args, settings)
    specs = declared(load_app(settings.app), settings)
    states = describe(admin(kafka(settings), client_config(settings)), specs)
    if args.json:
        for s in states:
            print(
                json.dumps(
                    {
                        "topic": s.spec.name,
                        "exists": s.exists,
                        "partitions": s.partitions,
                        "replication_factor": s.replication_factor,
                        "config": {k: s.config.get(k) for k in sorted(s.spec.config)},
                        "declared": {
                            "partitions": s.spec.partitions,
                            "replication_factor": s.spec.replication_factor,
                            "config": dict(s.spec.config),
                        },
                        "drift": s.drift,
                    }
                )
            )
    else:
        width = max(len(s.spec.name) for s in states)
        print(f"{'TOPIC':<{width}}  PARTS  RF  MIN.ISR  CLEANUP  RETENTION.MS  STATE")
        for s in states:
            c = s.config
            parts = "-" if s.partitions is None else str(s.partitions)
            rf = "-" if s.replication_factor is None else str(s.replication_factor)
            retention = c.get("retention.ms", "-") if c.get("cleanup.policy") != "compact" else "-"
            state = "ok" if not s.drift else "; ".join(s.drift)
            print(
                f"{s.spec.name:<{width}}  {parts:>5}  {rf:>2}  {c.get('min.insync.replicas', '-'):>7}  "
                f"{c.get('cleanup.policy', '-'):<7}  {retention:>12}  {state}"
            )
    return 1 if any(s.drift for s in states) else 0
