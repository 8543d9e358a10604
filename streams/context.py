"""`EventContext`: everything a handler may know about the delivery it is processing.

Handlers get the decoded event plus this explicit context; nothing comes from an HTTP
request or global state. Pass `idempotency_key` on to external systems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EventContext:
    """Where one delivery came from and which attempt this is."""

    handler: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    entity_id: str
    event_id: str
    idempotency_key: str
    attempt: int
    workspace: str = ""
    headers: Mapping[str, bytes] = field(default_factory=dict)
    #: Where the event was first consumed; differs from topic/partition/offset on a retry.
    origin_topic: str = ""
    origin_partition: int = -1
    origin_offset: int = -1
    #: Kafka writes of this attempt, sent only if the attempt succeeds (see `emit`).
    outbox: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list, compare=False, repr=False)

    def emit(self, topic: str, event: Mapping[str, Any]) -> None:
        """Publish `event` to `topic` (a declared contract) as part of this attempt.

        Nothing is sent unless the handler returns normally; under the exactly-once
        guarantee the writes commit atomically with the source offset.
        """
        self.outbox.append((topic, event))
