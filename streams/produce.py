"""Producing events from the command line: one `--value`, a JSON-lines file, or `--count`
generated copies for load, each validated against the topic's schema before it is sent.

Envelope fields the input leaves out (event_id, event_type, occurred_at, source,
workspace) are filled in; `entity_id` comes from the event or `--key`. A file is checked
completely before anything is sent, so an invalid line stops the run with nothing
produced (its line number and field named), unless `skip_invalid` says to produce the
valid lines and report the others.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fastavro._validate_common import ValidationError
from fastavro.validation import validate

from streams.errors import StreamsError
from streams.publish import Publisher
from streams.schemas import AvroSchema


class InvalidEvent(StreamsError):
    """An input event that does not match the topic's schema (the message names the field)."""


@dataclass
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Summary:
    produced: int = 0
    skipped: list[Problem] = field(default_factory=list)


def parse_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InvalidEvent(f"not a JSON object but a {type(value).__name__}")
    return value


def check(schema: AvroSchema, event: Mapping[str, Any]) -> None:
    """Raise InvalidEvent naming the first field of `event` that does not fit `schema`."""
    parsed = schema.parsed
    if isinstance(parsed, dict) and parsed.get("type") == "record":
        fields = {f["name"]: f for f in parsed["fields"]}
        unknown = sorted(set(event) - set(fields))
        if unknown:
            raise InvalidEvent(f"field {unknown[0]!r} is not in {schema.name}; fields: {', '.join(fields)}")
    try:
        validate(dict(event), parsed, raise_errors=True)
    except ValidationError as exc:
        error = exc.errors[0] if exc.errors else None
        if error is None:
            raise InvalidEvent(f"does not match {schema.name}") from None
        name = str(error.field or "")
        if schema.name and name.startswith(schema.name + "."):
            name = name[len(schema.name) + 1 :]
        expected = json.dumps(error.schema) if not isinstance(error.schema, str) else error.schema
        if error.datum is None and name in event and event[name] is not None:
            raise InvalidEvent(f"field {name}: expected {expected}") from None
        if error.datum is None:
            raise InvalidEvent(f"field {name} is missing (expected {expected[:80]})") from None
        raise InvalidEvent(
            f"field {name}: expected {expected[:80]}, got {json.dumps(error.datum)[:80]}"
        ) from None


class EventMaker:
    """Turns input objects into complete, checked events for one topic."""

    def __init__(self, publisher: Publisher, topic: str, key: str | None = None) -> None:
        self.publisher = publisher
        self.topic = topic
        self.key = key
        self.schema = publisher.app.contract(topic).schema
        parsed = self.schema.parsed
        self.fields = (
            {f["name"] for f in parsed["fields"]}
            if isinstance(parsed, dict) and "fields" in parsed
            else set()
        )

    def make(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        entity = raw.get("entity_id", self.key)
        if entity is None:
            raise InvalidEvent("field entity_id is missing; add it to the event or pass --key")
        defaults = self.publisher.envelope(self.topic, str(entity), {})
        event = {k: v for k, v in defaults.items() if k in self.fields}
        event.update(raw)
        check(self.schema, event)
        return event

    def send(self, event: Mapping[str, Any]) -> None:
        try:
            self.publisher.publish(self.topic, event, key=self.key)
        except BufferError:
            # The producer's queue is full (a long --count run): wait for the broker, then go on.
            self.publisher.flush()
            self.publisher.publish(self.topic, event, key=self.key)


class Progress:
    """A one-line progress bar (a `\\r` line) when the output is a terminal, else nothing."""

    def __init__(self, total: int, out: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.total = total
        self.enabled = self.out.isatty() if enabled is None else enabled
        self._last = 0.0
        self._shown = False

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < 0.1 and done < self.total):
            return
        self._last = now
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        self.out.write(f"\r[{bar:<30}] {done}/{self.total} {share:4.0%}")
        self.out.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.out.write("\r\033[K")
            self.out.flush()


def _lines(path: Path | None, stdin: TextIO) -> Iterator[tuple[int, str]]:
    if path is None:
        yield from ((n, line) for n, line in enumerate(stdin, 1))
        return
    with path.open(encoding="utf-8") as fh:
        yield from ((n, line) for n, line in enumerate(fh, 1))


def read_file(path: Path | None, stdin: TextIO = sys.stdin) -> list[tuple[int, str]] | Path:
    """`-`/None means stdin, read into memory (it cannot be read twice); a path stays a path."""
    if path is None or str(path) == "-":
        return [(n, line) for n, line in _lines(None, stdin)]
    if not path.is_file():
        raise StreamsError(f"--file {path}: no such file; give a JSON-lines file (one event per line) or -")
    return path


def _numbered(source: list[tuple[int, str]] | Path) -> Iterable[tuple[int, str]]:
    return source if isinstance(source, list) else _lines(source, sys.stdin)


def produce_lines(
    maker: EventMaker,
    source: list[tuple[int, str]] | Path,
    *,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> Summary:
    """Check every line, then produce the valid ones (all, or none if any is invalid)."""
    problems: list[Problem] = []
    total = 0
    for number, text in _numbered(source):
        if not text.strip():
            continue
        try:
            maker.make(parse_json(text))
        except InvalidEvent as exc:
            problems.append(Problem(number, str(exc)))
            if not skip_invalid:
                break
        total += 1
    summary = Summary(skipped=problems)
    if problems and not skip_invalid:
        return summary
    bad = {p.line for p in problems}
    bar = progress or Progress(total - len(bad), enabled=False)
    bar.total = total - len(bad)
    for number, text in _numbered(source):
        if not text.strip() or number in bad:
            continue
        # Fresh envelope defaults (event_id) per line, as when it was checked.
        maker.send(maker.make(parse_json(text)))
        summary.produced += 1
        bar.update(summary.produced)
    maker.publisher.flush()
    bar.close()
    return summary


def produce_count(
    maker: EventMaker, template: Mapping[str, Any], count: int, *, progress: Progress | None = None
) -> Summary:
    """`count` copies of `template`, each with a new event_id (and entity_id, unless --key)."""
    base = str(template.get("entity_id", maker.key or "load"))
    run = uuid.uuid4().hex[:6]
    bar = progress or Progress(count, enabled=False)
    summary = Summary()
    for i in range(count):
        raw = {**template, "event_id": str(uuid.uuid4())}
        if maker.key is None:
            raw["entity_id"] = f"{base}-{run}-{i}"
        maker.send(maker.make(raw))
        summary.produced += 1
        bar.update(summary.produced)
    maker.publisher.flush()
    bar.close()
    return summary
