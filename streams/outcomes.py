"""Building the records that say what happened: status events and dead-letter headers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["SUCCEEDED", "SKIPPED_DUPLICATE", "RETRYING", "FAILED", "DEAD_LETTERED", "PARKED"]
TERMINAL: frozenset[str] = frozenset({"SUCCEEDED", "SKIPPED_DUPLICATE", "FAILED", "DEAD_LETTERED", "PARKED"})

# Header names on retry and dead-letter records. Values are UTF-8 text.
H_ATTEMPT = "streams-attempt"
H_HOP = "streams-retry-hop"
H_NOT_BEFORE = "streams-not-before-ms"
H_HANDLER = "streams-handler"
H_ORIGIN_TOPIC = "streams-original-topic"
H_ORIGIN_PARTITION = "streams-original-partition"
H_ORIGIN_OFFSET = "streams-original-offset"
H_ORIGIN_TIMESTAMP = "streams-original-timestamp-ms"
H_ERROR_CLASS = "streams-error-class"
H_ERROR_MESSAGE = "streams-error-message"
H_FIRST_FAILURE = "streams-first-failure-ms"
H_LAST_FAILURE = "streams-last-failure-ms"
H_REASON = "streams-dead-letter-reason"
H_REPLAY = "streams-replayed-from"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Origin:
    """Where a record was first consumed (a retry carries its origin in headers)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    first_failure_ms: int | None = None
    hop: int = 0
    attempt: int = 0

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        headers: Mapping[str, bytes],
    ) -> Origin:
        """The origin of a delivery: itself, or what its retry headers say."""
        if H_ORIGIN_TOPIC not in headers:
            return cls(topic, partition, offset, timestamp_ms)

        def num(name: str, default: int) -> int:
            try:
                return int(headers[name].decode())
            except (KeyError, ValueError, UnicodeDecodeError):
                return default

        first = num(H_FIRST_FAILURE, -1)
        return cls(
            topic=headers[H_ORIGIN_TOPIC].decode(errors="replace"),
            partition=num(H_ORIGIN_PARTITION, partition),
            offset=num(H_ORIGIN_OFFSET, offset),
            timestamp_ms=num(H_ORIGIN_TIMESTAMP, timestamp_ms),
            first_failure_ms=first if first >= 0 else None,
            hop=num(H_HOP, 0),
            attempt=num(H_ATTEMPT, 0),
        )

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (H_ORIGIN_TOPIC, self.topic.encode()),
            (H_ORIGIN_PARTITION, str(self.partition).encode()),
            (H_ORIGIN_OFFSET, str(self.offset).encode()),
            (H_ORIGIN_TIMESTAMP, str(self.timestamp_ms).encode()),
        ]


def placeholder_event_id(topic: str, partition: int, offset: int) -> str:
    """A stable UUID naming a record whose own event_id could not be read."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kafka://{topic}/{partition}/{offset}"))


def status_record(
    *,
    app: str,
    workspace: str,
    handler: str,
    outcome: Outcome,
    event_id: str,
    entity_id: str,
    idempotency_key: str,
    attempt: int,
    topic: str,
    partition: int,
    offset: int,
    received_ms: int,
    started_ms: int,
    finished_ms: int,
    duration_ms: int,
    error_class: str | None = None,
    error_message: str | None = None,
    duplicate_of: str | None = None,
    original_outcome: str | None = None,
    original_finished_ms: int | None = None,
    parked_behind: str | None = None,
) -> dict[str, object]:
    """One ProcessingStatus record (schemas/processing_status.avsc)."""
    return {
        "status_id": str(uuid.uuid4()),
        "event_id": event_id,
        "entity_id": entity_id,
        "event_type": "streams.status",
        "occurred_at": finished_ms,
        "source": app,
        "workspace": workspace,
        "handler": handler,
        "idempotency_key": idempotency_key,
        "outcome": outcome,
        "attempt": attempt,
        "error_class": error_class,
        "error_message": error_message,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "received_at": received_ms,
        "started_at": started_ms,
        "finished_at": finished_ms,
        "duration_ms": duration_ms,
        "duplicate_of": duplicate_of,
        "original_outcome": original_outcome,
        "original_finished_at": original_finished_ms,
        "parked_behind": parked_behind,
    }
