"""`EventContext`: everything a handler may know about the delivery it is processing.

Handlers get the decoded event plus this explicit context; nothing comes from an HTTP
request or global state. Pass `idempotency_key` on to external systems.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
