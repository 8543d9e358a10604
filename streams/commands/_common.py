"""What the operating commands share: --workspace/--app options, reachability checks
with deadlines (one line, never a hang), topic-name and time parsing."""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from datetime import datetime

from streams.config import Settings, _parse_workspace
from streams.errors import ConfigError, UnreachableError
from streams.kafka_probe import broker_count
from streams.schema_registry import RegistryUnavailable, SchemaRegistryClient
from streams.security import client_config, registry_client

PROBE_TIMEOUT_S = 5.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def add_workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", metavar="NAME", help="topic namespace prefix (default $STREAMS_WORKSPACE)"
    )


def add_app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app", metavar="MODULE:ATTR", help="the App (default $STREAMS_APP, streams.examples:app)"
    )


def settings_for(args: argparse.Namespace, settings: Settings) -> Settings:
    changes: dict[str, object] = {}
    if getattr(args, "workspace", None) is not None:
        changes["workspace"] = _parse_workspace("--workspace", args.workspace)
    if getattr(args, "app", None):
        changes["app"] = args.app
    return dataclasses.replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


def kafka(settings: Settings) -> str:
    """The bootstrap servers, after the cluster answered a metadata request in time.

    Wrong credentials or CA end the probe at once with an AuthError naming the fix.
    """
    bootstrap = settings.require_kafka()
    try:
        broker_count(bootstrap, timeout_s=PROBE_TIMEOUT_S, extra=client_config(settings))
    except UnreachableError as exc:
        raise UnreachableError(f"{exc}; check STREAMS_KAFKA_BOOTSTRAP or run `streams local up`") from None
    return bootstrap


def registry(settings: Settings) -> SchemaRegistryClient:
    """A registry client, after the registry answered in time."""
    client = registry_client(settings, timeout_s=PROBE_TIMEOUT_S)
    try:
        client.subjects()
    except RegistryUnavailable as exc:
        message = str(exc)
        if "STREAMS_SCHEMA_REGISTRY_URL" not in message:
            message += "; check STREAMS_SCHEMA_REGISTRY_URL or run `streams local up`"
        raise RegistryUnavailable(message) from None
    return client


def source_topic(settings: Settings, name: str) -> str:
    """The real name of a source topic given as `orders.created`, its DLQ name, or its full name."""
    for suffix in (".dlq.replayed", ".dlq", ".retry"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    prefix = f"{settings.workspace}."
    if settings.workspace and name.startswith(prefix):
        return name
    return settings.topic(name)


def parse_since(text: str) -> int:
    """Epoch milliseconds of `--since`: a duration ago (30s, 10m, 2h, 1d) or an ISO time."""
    match = _DURATION.match(text.strip())
    if match:
        return int((time.time() - float(match.group(1)) * _UNITS[match.group(2)]) * 1000)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is neither a duration (30s, 10m, 2h, 1d) nor an ISO time (2024-05-01T12:00)"
        ) from None
    return int(when.timestamp() * 1000)  # a naive time is local time


def parse_coordinates(text: str) -> tuple[int, int]:
    """`PARTITION:OFFSET` -> (partition, offset)."""
    partition, sep, offset = text.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise ConfigError(f"--offset {text!r} is not PARTITION:OFFSET; write it like 0:42 (see `dlq list`)")
    return int(partition), int(offset)
