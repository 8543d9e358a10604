"""Asking a Kafka cluster whether it answers, with a deadline and no librdkafka noise."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.errors import UnreachableError

_quiet = logging.getLogger("streams.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def quiet_logger() -> logging.Logger:
    """A logger that swallows librdkafka's retry chatter (errors surface as exceptions)."""
    return _quiet


def broker_count(bootstrap: str, timeout_s: float = 5.0, extra: dict[str, object] | None = None) -> int:
    """The number of brokers in the cluster behind `bootstrap`; raises UnreachableError."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": int(timeout_s * 1000),
        "logger": _quiet,
        **(extra or {}),
    }
    admin = AdminClient(config)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UnreachableError(
            f"Kafka at {bootstrap} did not answer within {timeout_s:g}s ({exc.args[0].str()})"
        ) from None
    return len(metadata.brokers)
