"""`streams tail`: the status topic as an aligned, coloured table or JSON lines.

The consumer assigns the topic's partitions itself under a throwaway group id and never
commits, so it takes no partition from and moves no offset of any worker's group.
Without --follow it stops at the end of the topic as it was when it started.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from streams.codec import AvroCodec, CodecError
from streams.commands._common import add_workspace, kafka, parse_since, registry, settings_for
from streams.config import Settings
from streams.errors import ConfigError, UnreachableError
from streams.kafka_probe import quiet_logger
from streams.security import client_config

OUTCOMES = ("SUCCEEDED", "SKIPPED_DUPLICATE", "RETRYING", "FAILED", "DEAD_LETTERED")
COLORS = {
    "SUCCEEDED": "32",
    "SKIPPED_DUPLICATE": "36",
    "RETRYING": "33",
    "FAILED": "35",
    "DEAD_LETTERED": "31",
}


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tail = sub.add_parser(
        "tail",
        help="print status events (table or --json), filtered; never joins a worker's group",
        description="Read the status topic from the beginning (or --since) to its end, or "
        "--follow it. Exit 1 if --max N events did not arrive within --timeout.",
    )
    tail.add_argument("--entity", action="append", metavar="ID", help="only this entity (repeatable)")
    tail.add_argument("--handler", action="append", metavar="NAME", help="only this handler (repeatable)")
    tail.add_argument(
        "--outcome",
        action="append",
        metavar="OUTCOME",
        help=f"only these outcomes ({', '.join(OUTCOMES)}; repeatable)",
    )
    tail.add_argument(
        "--since", metavar="WHEN", help="start at a time: 30s, 10m, 2h, 1d ago or 2024-05-01T12:00"
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per line (for scripts)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep waiting for new events")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N matching events")
    tail.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    add_workspace(tail)
    tail.set_defaults(func=_tail)


def _outcomes(values: list[str] | None) -> set[str] | None:
    if not values:
        return None
    wanted = {v.strip().upper() for value in values for v in value.split(",") if v.strip()}
    unknown = sorted(wanted - set(OUTCOMES))
    if unknown:
        raise ConfigError(
            f"--outcome {', '.join(unknown)} is not an outcome; use one of {', '.join(OUTCOMES)}"
        )
    return wanted


class StatusReader:
    """Decoded status records of one topic from `since_ms` (or the beginning), no group, no commits."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        codec: AvroCodec,
        since_ms: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.codec = codec
        self.skipped = 0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                # librdkafka needs a group id even for assign(); a fresh one is never joined.
                "group.id": f"streams-tail-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "socket.timeout.ms": 10_000,
                "logger": quiet_logger(),
                **(extra or {}),
            }
        )
        try:
            metadata = self._consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            raise UnreachableError(f"Kafka did not answer: {exc.args[0].str()}") from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise ConfigError(
                f"status topic {topic} does not exist; start a worker in that workspace or run `streams topics create`"
            )
        partitions = sorted(info.partitions)
        self._ends: dict[int, int] = {}
        for p in partitions:
            _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            self._ends[p] = high
        starts = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:
            wanted = [TopicPartition(topic, p, since_ms) for p in partitions]
            found = self._consumer.offsets_for_times(wanted, timeout=10)
            # -1: nothing at or after that time in the partition, so start at its end.
            starts = [
                TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else self._ends[tp.partition])
                for tp in found
            ]
        self._pending = {
            tp.partition
            for tp in starts
            if tp.offset == OFFSET_BEGINNING or tp.offset < self._ends[tp.partition]
        }
        self._pending = {p for p in self._pending if self._ends[p] > 0}
        self._consumer.assign(starts)

    @property
    def caught_up(self) -> bool:
        """True once every record that was in the topic at the start has been read."""
        return not self._pending

    def records(self, timeout_s: float = 0.5) -> Iterator[dict[str, Any]]:
        for message in self._consumer.consume(500, timeout=timeout_s):
            if message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None and offset + 1 >= self._ends.get(partition, 0):
                self._pending.discard(partition)
            value = message.value()
            if value is None:
                continue
            try:
                record = self.codec.decode(value)
            except CodecError:
                self.skipped += 1
                continue
            if isinstance(record, dict):
                yield plain(record)

    def close(self) -> None:
        self._consumer.close()


def _ms(value: Any) -> int:
    """Epoch milliseconds of a timestamp-millis field (fastavro gives aware datetimes)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value or 0)


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """The record with timestamps as epoch milliseconds, as on the wire (JSON-friendly)."""
    return {k: _ms(v) if isinstance(v, datetime) else v for k, v in record.items()}


def _row(s: dict[str, Any], color: bool) -> str:
    when = datetime.fromtimestamp(_ms(s.get("finished_at") or s.get("occurred_at")) / 1000)
    outcome = str(s.get("outcome", ""))
    shown = f"{outcome:<17}"
    if color:
        shown = f"\033[{COLORS.get(outcome, '0')}m{shown}\033[0m"
    error = str(s.get("error_class") or "")
    if error:
        error = error.rsplit(".", 1)[-1] + (f": {s['error_message']}" if s.get("error_message") else "")
    entity = str(s.get("entity_id", ""))
    entity = entity if len(entity) <= 28 else entity[:27] + "…"
    return (
        f"{when:%H:%M:%S}.{when.microsecond // 1000:03d}  {s.get('handler', '')!s:<16} {entity:<28} "
        f"{shown} {s.get('attempt', 0):>3} {s.get('duration_ms', 0):>6}ms  {error[:70]}"
    )


HEADER = f"{'TIME':<12}  {'HANDLER':<16} {'ENTITY':<28} {'OUTCOME':<17} {'TRY':>3} {'TOOK':>8}  ERROR"


def _tail(args: argparse.Namespace, settings: Settings) -> int:
    settings = settings_for(args, settings)
    outcomes = _outcomes(args.outcome)
    since = parse_since(args.since) if args.since else None
    if args.max is not None and args.max < 1:
        raise ConfigError("--max N needs N >= 1")
    entities, handlers = set(args.entity or ()), set(args.handler or ())
    bootstrap = kafka(settings)
    codec = AvroCodec(registry(settings))
    reader = StatusReader(
        bootstrap, settings.topic(settings.status_topic), codec, since, extra=client_config(settings)
    )
    color = not args.json and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = 0
    if not args.json:
        print(HEADER, flush=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            if not args.follow and reader.caught_up:
                break
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            for s in reader.records(wait):
                if (
                    (entities and s.get("entity_id") not in entities)
                    or (handlers and s.get("handler") not in handlers)
                    or (outcomes and s.get("outcome") not in outcomes)
                    or (since is not None and int(s.get("finished_at") or 0) < since)
                ):
                    continue
                print(json.dumps(s, default=str) if args.json else _row(s, color), flush=True)
                shown += 1
                if args.max is not None and shown >= args.max:
                    return 0
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a --follow ends
    finally:
        reader.close()
        if reader.skipped:
            print(f"streams: skipped {reader.skipped} undecodable status records", file=sys.stderr)
    if args.max is not None and shown < args.max:
        why = f"within {args.timeout:g}s" if deadline is not None and args.follow else "in the topic"
        print(f"streams: tail: {shown} of {args.max} matching status events {why}", file=sys.stderr)
        return 1
    return 0
