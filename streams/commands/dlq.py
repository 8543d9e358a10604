"""`streams dlq list|show|replay SOURCE_TOPIC`: inspect and replay dead letters."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from datetime import datetime
from typing import Any

from streams.codec import AvroCodec, CodecError, peek_schema_id
from streams.commands._common import (
    add_workspace,
    kafka,
    parse_coordinates,
    parse_since,
    registry,
    settings_for,
    source_topic,
)
from streams.config import Settings
from streams.dlq import DeadLetter, Replayer, check_dlq_exists, read, replayed, select
from streams.errors import ConfigError
from streams.schemas import redact
from streams.security import client_config
from streams.topics import REPLAYED_SUFFIX


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="list, show and replay dead letters of a source topic",
        description="SOURCE_TOPIC is the topic the events were consumed from (e.g. orders.created); "
        "its dead letters are on <SOURCE_TOPIC>.dlq. Offsets are PARTITION:OFFSET of the DLQ.",
    )
    actions = dlq.add_subparsers(dest="action", metavar="{list,show,replay}", required=True)
    listing = actions.add_parser("list", help="dead letters with their error headers, grouped by error class")
    show = actions.add_parser("show", help="one dead letter: headers and decoded value (hex if undecodable)")
    replay = actions.add_parser(
        "replay",
        help="replay dead letters to the source topic, each exactly once (re-runs skip replayed ones)",
        description="Produce the selected dead letters' original key and value back to the source topic "
        "(same partition) with a streams-replayed-from header. Each is replayed once: a marker "
        "committed in the same transaction makes a re-run (after an interrupt) skip it.",
    )
    for parser in (listing, show, replay):
        parser.add_argument("source", metavar="SOURCE_TOPIC", help="e.g. orders.created")
        add_workspace(parser)
    for parser in (listing, replay):
        parser.add_argument(
            "--offset", action="append", default=[], metavar="P:O", help="only this dead letter (repeatable)"
        )
        parser.add_argument(
            "--error-class",
            action="append",
            default=[],
            metavar="CLASS",
            help="only this error class, full or short name (repeatable)",
        )
        parser.add_argument(
            "--since", metavar="WHEN", help="only dead-lettered since: 30s, 10m, 2h, 1d or an ISO time"
        )
    listing.add_argument("--json", action="store_true", help="one JSON object per dead letter")
    show.add_argument(
        "--offset", required=True, metavar="P:O", help="the dead letter, as `dlq list` shows it"
    )
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed, replay nothing")
    replay.add_argument("--rate", type=float, metavar="N", help="at most N dead letters per second")
    listing.set_defaults(func=_list)
    show.set_defaults(func=_show)
    replay.set_defaults(func=_replay)


def _load(args: argparse.Namespace, settings: Settings) -> tuple[str, str, list[DeadLetter]]:
    settings = settings_for(args, settings)
    source = source_topic(settings, args.source)
    dlq = source + ".dlq"
    bootstrap = kafka(settings)
    check_dlq_exists(bootstrap, dlq, extra=client_config(settings))
    return bootstrap, source, read(bootstrap, dlq, extra=client_config(settings))


def _selected(args: argparse.Namespace, letters: list[DeadLetter]) -> list[DeadLetter]:
    return select(
        letters,
        offsets=[parse_coordinates(o) for o in args.offset],
        error_classes=args.error_class,
        since_ms=parse_since(args.since) if args.since else None,
    )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")


def _list(args: argparse.Namespace, settings: Settings) -> int:
    [parse_coordinates(o) for o in args.offset]  # a malformed --offset fails before connecting
    bootstrap, source, letters = _load(args, settings)
    done = replayed(bootstrap, source + REPLAYED_SUFFIX, extra=client_config(settings))
    chosen = _selected(args, letters)
    if args.json:
        for d in chosen:
            print(json.dumps({**d.summary(), "replayed": d.coordinates in done}))
        return 0
    groups: dict[str, list[DeadLetter]] = defaultdict(list)
    for d in chosen:
        groups[d.error_class].append(d)
    was = sum(d.coordinates in done for d in chosen)
    print(f"{source}.dlq: {len(chosen)} dead letters ({was} replayed) of {len(letters)}")
    for cls, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"\n{cls}  ({len(group)})")
        for d in group:
            key = d.key.decode(errors="replace") if d.key is not None else "-"
            mark = "  [replayed]" if d.coordinates in done else ""
            message = d.header("streams-error-message")
            print(
                f"  {d.coordinates:<8} {_when(d.timestamp_ms)}  {key[:28]:<28} "
                f"{d.header('streams-dead-letter-reason'):<18} attempt {d.header('streams-attempt') or '?':>2}  "
                f"{message[:60]}{mark}"
            )
    return 0


def _decoded(settings: Settings, value: bytes | None) -> tuple[Any, str | None]:
    """(decoded value with sensitive fields redacted, None) or (None, why it is not decodable)."""
    if value is None:
        return None, "no value (a tombstone)"
    try:
        codec = AvroCodec(registry(settings))
        record = codec.decode(value)
        writer = codec.writer_schema(peek_schema_id(value))
    except CodecError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return (redact(record, writer) if isinstance(record, dict) else record), None


def _show(args: argparse.Namespace, settings: Settings) -> int:
    partition, offset = parse_coordinates(args.offset)
    bootstrap, source, letters = _load(args, settings)
    found = [d for d in letters if (d.partition, d.offset) == (partition, offset)]
    if not found:
        raise ConfigError(
            f"no dead letter at {args.offset} on {source}.dlq; see `streams dlq list {args.source}`"
        )
    d = found[0]
    done = replayed(bootstrap, source + REPLAYED_SUFFIX, extra=client_config(settings))
    print(f"dead letter {source}.dlq {d.coordinates}  ({_when(d.timestamp_ms)})")
    print(f"key       {d.key.decode(errors='replace') if d.key is not None else '-'}")
    print(
        f"replayed  {'yes, at ' + _when(int(done[d.coordinates].get('replayed_at_ms', 0))) if d.coordinates in done else 'no'}"
    )
    print("headers")
    for name, raw in d.headers:
        print(f"  {name:<32} {raw.decode(errors='replace')}")
    record, why = _decoded(settings_for(args, settings), d.value)
    if why is None:
        print("value (sensitive fields redacted)")
        print(json.dumps(record, indent=2, default=str))
    else:
        data = d.value or b""
        print(f"value: {len(data)} bytes, not decodable ({why}); hex:")
        for i in range(0, len(data), 32):
            print(f"  {i:06x}  {data[i : i + 32].hex(' ')}")
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    offsets = [parse_coordinates(o) for o in args.offset]
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate N needs N > 0 (dead letters per second)")
    bootstrap, source, letters = _load(args, settings)
    chosen = select(
        letters,
        offsets=offsets,
        error_classes=args.error_class,
        since_ms=parse_since(args.since) if args.since else None,
    )
    missing = sorted(set(offsets) - {(d.partition, d.offset) for d in letters})
    if missing:
        raise ConfigError(f"no dead letter at {', '.join(f'{p}:{o}' for p, o in missing)} on {source}.dlq")
    if args.dry_run:
        done = replayed(bootstrap, source + REPLAYED_SUFFIX, extra=client_config(settings))
        todo = [d for d in chosen if d.coordinates not in done]
        for d in todo:
            print(
                f"would replay {d.coordinates}  {d.error_class}  key {d.key.decode(errors='replace') if d.key else '-'}"
            )
        print(
            f"dry run: {len(todo)} of {len(chosen)} selected would be replayed to {source} ({len(chosen) - len(todo)} already were)"
        )
        return 0
    replayer = Replayer(
        bootstrap, source, replication_factor=settings.replication_factor, extra=client_config(settings)
    )
    # After the fencing in Replayer(): any interrupted run's transaction is resolved.
    done = replayer.already_replayed()
    todo = [d for d in chosen if d.coordinates not in done]
    count = 0

    def progress(d: DeadLetter) -> None:
        nonlocal count
        count += 1
        if sys.stdout.isatty():
            print(f"\rreplayed {count}/{len(todo)}", end="", flush=True)

    try:
        replayer.replay(todo, rate=args.rate, on_replayed=progress)
    except KeyboardInterrupt:
        replayer.abort()
        print(
            f"\nstreams: interrupted after replaying {count} of {len(todo)}; run the same command again "
            "to replay the rest (replayed ones are skipped)",
            file=sys.stderr,
        )
        return 130
    if sys.stdout.isatty() and count:
        print()
    print(
        f"replayed {count} dead letters to {source} ({len(chosen) - len(todo)} of the {len(chosen)} selected already were)"
    )
    return 0
