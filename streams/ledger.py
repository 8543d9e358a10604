"""The dedup ledger: per entity ID, the state of every idempotency key a handler has seen.

Backed by a faust Table (RocksDB through rocksdict, replicated to a compacted changelog
topic), keyed by entity ID so it is co-partitioned with the source topic. A value maps
idempotency key -> entry: state (IN_PROGRESS, COMPLETED, FAILED), attempts, last error
class, first/last timestamps and the event that completed it. Entries older than the
retention are dropped whenever their entity is written, so the ledger stays bounded.
"""

from __future__ import annotations

import contextlib
import json
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from faust.streams import _current_event
from faust.types import EventT, TableT

State = Literal["IN_PROGRESS", "COMPLETED", "FAILED"]

DEFAULT_RETENTION_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one idempotency key of one entity."""

    state: State
    attempts: int
    first_seen_ms: int
    last_seen_ms: int
    event_id: str
    last_error_class: str | None = None
    completed_at_ms: int | None = None
    #: "topic/partition/offset" of the delivery that completed it: a redelivery of that
    #: very record (after a crash lost its status) is told apart from a duplicate.
    completed_by: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LedgerEntry:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@contextlib.contextmanager
def as_current(event: EventT[bytes]) -> Iterator[None]:
    """Make `event` faust's current event, so table reads and writes use its partition.

    A batch from `take_events` mixes partitions; faust picks the store and changelog
    partition from the current event, which must be the record being processed.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class Ledger:
    """Typed access to one handler's ledger table."""

    def __init__(
        self,
        table: TableT[bytes, bytes],
        retention_s: float = DEFAULT_RETENTION_S,
        on_write: Callable[[State], None] | None = None,
    ) -> None:
        self.table = table
        self.on_write = on_write
        self.retention_ms = int(retention_s * 1000)

    def get(self, event: EventT[bytes], entity_id: str, key: str) -> LedgerEntry | None:
        with as_current(event):
            value = _load(self.table.get(entity_id.encode()))
        if not value or key not in value:
            return None
        return LedgerEntry.from_json(value[key])

    def entries(self, entity_id: str) -> dict[str, LedgerEntry]:
        """All entries of an entity (for `streams status`; reads any local partition)."""
        value = _load(self.table.get(entity_id.encode()))
        return {k: LedgerEntry.from_json(v) for k, v in value.items()}

    def approximate_size(self) -> int:
        """Entities in the local RocksDB partitions (RocksDB's own estimate)."""
        total = 0
        for db in getattr(self.table.data, "_dbs", {}).values():
            try:
                total += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
            except Exception:  # an older rocksdict, or a closed partition
                continue
        return total

    def record(
        self,
        event: EventT[bytes],
        entity_id: str,
        key: str,
        state: State,
        event_id: str,
        error_class: str | None = None,
        now_ms: int | None = None,
        attempts: int | None = None,
        delivery: str | None = None,
    ) -> LedgerEntry:
        """Write the new state of `key` (and drop the entity's expired entries)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with as_current(event):
            raw = entity_id.encode()
            value = _load(self.table.get(raw))
            previous = value.get(key)
            prior = LedgerEntry.from_json(previous) if previous else None
            entry = LedgerEntry(
                state=state,
                attempts=attempts if attempts is not None else (prior.attempts if prior else 0),
                first_seen_ms=prior.first_seen_ms if prior else now,
                last_seen_ms=now,
                event_id=event_id,
                last_error_class=error_class if error_class else (prior.last_error_class if prior else None),
                completed_at_ms=now if state == "COMPLETED" else (prior.completed_at_ms if prior else None),
                completed_by=delivery if state == "COMPLETED" else (prior.completed_by if prior else None),
            )
            value[key] = asdict(entry)
            horizon = now - self.retention_ms
            for other in [k for k, v in value.items() if k != key and v["last_seen_ms"] < horizon]:
                del value[other]
            self.table[raw] = json.dumps(value, separators=(",", ":")).encode()
        if self.on_write is not None:
            self.on_write(state)
        return entry


def _load(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}
