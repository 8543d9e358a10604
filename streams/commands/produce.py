"""`streams produce TOPIC`: validated, keyed events from --value, --file or --count."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.app import load_app
from streams.codec import AvroCodec
from streams.commands._common import add_app, add_workspace, kafka, registry, settings_for
from streams.config import Settings
from streams.errors import ConfigError
from streams.produce import (
    EventMaker,
    InvalidEvent,
    Progress,
    parse_json,
    produce_count,
    produce_lines,
    read_file,
)
from streams.publish import Publisher
from streams.security import client_config
from streams.topics import admin, partition_counts


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    produce = sub.add_parser(
        "produce",
        help="produce events validated against the topic's schema",
        description="Produce events to TOPIC (e.g. orders.created; the workspace prefix is added). "
        "Fields the event leaves out of the envelope (event_id, occurred_at, source, ...) are "
        "filled in. A file is checked completely first: an invalid line stops the run with "
        "nothing produced, unless --skip-invalid.",
    )
    produce.add_argument(
        "topic", metavar="TOPIC", help="the topic as in schemas/topics.json, e.g. orders.created"
    )
    what = produce.add_mutually_exclusive_group(required=True)
    what.add_argument("--value", metavar="JSON", help="one event as a JSON object")
    what.add_argument(
        "--file", type=Path, metavar="PATH", help="JSON lines, one event per line (- for stdin)"
    )
    produce.add_argument("--key", help="record key and default entity_id (default: each event's entity_id)")
    produce.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="with --value: produce N copies, each with a new event_id and entity_id (<id>-<run>-<i>; "
        "the same entity with --key)",
    )
    produce.add_argument(
        "--skip-invalid", action="store_true", help="produce the valid lines, report the others"
    )
    add_app(produce)
    add_workspace(produce)
    produce.set_defaults(func=_produce)


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings_for(args, settings)
    if args.count is not None and (args.count < 1 or args.value is None):
        raise ConfigError("--count N needs N >= 1 and a --value to copy")
    app = load_app(settings.app)
    prefix = f"{settings.workspace}."
    topic = args.topic[len(prefix) :] if settings.workspace and args.topic.startswith(prefix) else args.topic
    app.contract(topic)  # an unknown topic fails here, before any connection
    source = read_file(args.file) if args.file is not None else None
    bootstrap = kafka(settings)
    name = settings.topic(topic)
    if name not in partition_counts(admin(bootstrap, client_config(settings)), timeout_s=5):
        raise ConfigError(
            f"topic {name} does not exist; run `streams topics create` (workspace {settings.workspace!r})"
        )
    codec = AvroCodec(registry(settings))
    maker = EventMaker(Publisher(app, settings, codec=codec, source="streams-cli"), topic, key=args.key)

    if args.value is not None:
        try:
            raw = parse_json(args.value)
            if args.count is not None:
                raw.setdefault("entity_id", args.key or "load")  # copies get <entity_id>-<run>-<i>
            template = maker.make(raw)
        except InvalidEvent as exc:
            raise InvalidEvent(f"--value: {exc}") from None
        if args.count is None:
            maker.send(template)
            maker.publisher.flush()
            print(
                f"produced 1 event to {name} (entity {template['entity_id']}, event {template['event_id']})"
            )
            return 0
        summary = produce_count(maker, raw, args.count, progress=Progress(args.count))
        print(f"produced {_events(summary.produced)} to {name}")
        return 0

    assert source is not None
    where = "stdin" if isinstance(source, list) else str(source)
    summary = produce_lines(maker, source, skip_invalid=args.skip_invalid, progress=Progress(0))
    if summary.skipped and not args.skip_invalid:
        problem = summary.skipped[0]
        raise InvalidEvent(
            f"{where} {problem}; nothing was produced (fix that line, or --skip-invalid to produce the valid lines)"
        )
    for problem in summary.skipped:
        print(f"streams: skipped {where} {problem}", file=sys.stderr)
    skipped = f", skipped {len(summary.skipped)} invalid lines" if summary.skipped else ""
    print(f"produced {_events(summary.produced)} to {name}{skipped}")
    return 0


def _events(n: int) -> str:
    return f"{n} event" if n == 1 else f"{n} events"
