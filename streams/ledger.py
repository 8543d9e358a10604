"""The dedup ledger: per entity ID, the state of every idempotency key a handler has seen.

Backed by a faust Table (RocksDB through rocksdict, replicated to a compacted changelog
topic), keyed by entity ID so it is co-partitioned with the source topic. A value maps
idempotency key -> entry: state (IN_PROGRESS, COMPLETED, FAILED), attempts, last error
class, first/last timestamps and the event that completed it. Entries older than the
retention are dropped whenever their entity is written, so the ledger stays bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import rocksdict
from faust.streams import _current_event
from faust.types import EventT, TableT

State = Literal["IN_PROGRESS", "COMPLETED", "FAILED"]

DEFAULT_RETENTION_S = 7 * 24 * 3600.0
#: The reserved key of an entity's quarantine (no idempotency key starts with "~").
QUARANTINE = "~quarantine"


@dataclass(frozen=True)
class ParkedRecord:
    """A record held back behind its entity's failed event, exactly as it was consumed."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event_id: str

    def to_json(self) -> dict[str, Any]:
        return {
            "k": _b64(self.key),
            "v": _b64(self.value),
            "h": [[n, _b64(v)] for n, v in self.headers],
            "t": self.topic,
            "p": self.partition,
            "o": self.offset,
            "ts": self.timestamp_ms,
            "e": self.event_id,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ParkedRecord:
        return cls(
            _unb64(d["k"]),
            _unb64(d["v"]),
            tuple((str(n), _unb64(v) or b"") for n, v in d["h"]),
            str(d["t"]),
            int(d["p"]),
            int(d["o"]),
            int(d["ts"]),
            str(d["e"]),
        )


@dataclass(frozen=True)
class Quarantine:
    """An entity whose events wait behind `blocker_event_id` (in the retry topic or the DLQ)."""

    blocker_event_id: str
    blocker_key: str
    since_ms: int
    parked: tuple[ParkedRecord, ...]


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


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

    def to_json(self) -> dict[str, Any]:
        """The entry as stored (every field is a str, int or None: a shallow copy is
        `dataclasses.asdict` without its recursive deep copy, which is on the hot path)."""
        return dict(self.__dict__)


class as_current:
    """Make `event` faust's current event, so table reads and writes use its partition.

    A batch from `take_events` mixes partitions; faust picks the store and changelog
    partition from the current event, which must be the record being processed. A class,
    not `contextlib.contextmanager`: it runs several times per event (bench/PROFILE.md).
    """

    __slots__ = ("_event", "_token")

    def __init__(self, event: EventT[bytes]) -> None:
        self._event = event

    def __enter__(self) -> None:
        self._token = _current_event.set(weakref.ref(self._event))

    def __exit__(self, *exc: object) -> None:
        _current_event.reset(self._token)


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
        #: Table writes made through this ledger: a reader holding a value read earlier
        #: knows it is still current if this has not moved.
        self.writes = 0

    def load(self, event: EventT[bytes], entity_id: str) -> dict[str, Any]:
        """The entity's whole value, read once: `entry_in` and `quarantine_in` take it apart
        (the hot path reads an entity once per delivery, not once per question)."""
        with as_current(event):
            return _load(self._get(entity_id.encode()))

    def _get(self, key: bytes) -> bytes | None:
        """`table.get(key)` without the layers between the table and its RocksDB store (a
        KeyError raised and caught for every new entity, faust's sensors): same result."""
        store: Any = self.table.data
        read = getattr(store, "_get", None)
        if read is None:  # not faust's RocksDB store
            return self.table.get(key)
        value = read(store._encode_key(key))
        return None if value is None else store._decode_value(value)

    def _put(self, key: bytes, value: Mapping[str, Any] | None) -> None:
        """Every write of the table (None deletes, a tombstone in the changelog); counts
        `writes`, which tells a reader whether the value it holds is still current."""
        self.writes += 1
        if value is None:
            del self.table[key]
        else:
            self.table[key] = json.dumps(value, separators=(",", ":")).encode()

    def entries(self, entity_id: str) -> dict[str, LedgerEntry]:
        """All entries of an entity (for `streams status`; reads any local partition)."""
        value = _load(self.table.get(entity_id.encode()))
        return {k: LedgerEntry.from_json(v) for k, v in value.items() if k != QUARANTINE}

    # -- entity quarantine ---------------------------------------------------------------
    def quarantine(self, event: EventT[bytes], entity_id: str) -> Quarantine | None:
        return quarantine_in(self.load(event, entity_id))

    def quarantine_of(self, entity_id: str) -> Quarantine | None:
        """For views: the entity's quarantine, read from any local partition."""
        return quarantine_in(_load(self.table.get(entity_id.encode())))

    def _update(self, event: EventT[bytes], entity_id: str, change: Callable[[dict[str, Any]], None]) -> None:
        with as_current(event):
            raw = entity_id.encode()
            value = _load(self._get(raw))
            change(value)
            self._put(raw, value)

    def rewrite(self, event: EventT[bytes], entity_id: str) -> None:
        """Write the entity's value again, unchanged, so the changelog carries it.

        Faust writes the local RocksDB at once and the changelog through a producer
        buffer; a worker killed in between leaves its state directory ahead of the
        changelog, and a later owner that recovers from the changelog would not know.
        """
        self._update(event, entity_id, lambda value: None)

    def hold(self, event: EventT[bytes], entity_id: str, blocker_event_id: str, blocker_key: str) -> None:
        """Quarantine the entity behind `blocker_event_id` (keeping anything parked already)."""

        def change(value: dict[str, Any]) -> None:
            q = value.get(QUARANTINE) or {"parked": [], "since": int(time.time() * 1000)}
            q["blocker"], q["blocker_key"] = blocker_event_id, blocker_key
            value[QUARANTINE] = q

        self._update(event, entity_id, change)

    def park(self, event: EventT[bytes], entity_id: str, record: ParkedRecord) -> int:
        """Append `record` to the entity's parked records; returns how many are parked."""
        count = 0

        def change(value: dict[str, Any]) -> None:
            nonlocal count
            q = value[QUARANTINE]
            if not any(
                p["t"] == record.topic and p["p"] == record.partition and p["o"] == record.offset
                for p in q["parked"]
            ):  # a redelivery of a parked record parks it once
                q["parked"].append(record.to_json())
            count = len(q["parked"])

        self._update(event, entity_id, change)
        return count

    def release(self, event: EventT[bytes], entity_id: str) -> list[ParkedRecord]:
        """Lift the quarantine; returns the parked records in the order they arrived."""
        released: list[ParkedRecord] = []

        def change(value: dict[str, Any]) -> None:
            q = value.pop(QUARANTINE, None) or {"parked": []}
            released.extend(ParkedRecord.from_json(p) for p in q["parked"])

        self._update(event, entity_id, change)
        return released

    # -- expiry ---------------------------------------------------------------------------
    async def sweep(
        self, partitions: set[int], source_topic: str, now_ms: int | None = None, chunk: int = 1000
    ) -> tuple[int, int]:
        """Drop expired entries from the active `partitions`; returns (pruned, deleted).

        An entity left with no live entry and no quarantine is deleted, which writes a
        tombstone to the changelog so compaction removes it there too. Changes are applied
        every `chunk` expired entities (RocksDB iterators read a consistent snapshot, so
        writing while iterating is safe): memory stays bounded by the chunk, not by how
        many entities expire, and between chunks the changelog producer drains. The scan
        bypasses RocksDB's block cache: read through it, every block of the ledger would
        stay cached (up to faust's 2 GiB per partition), so resident memory would grow
        with the ledger's size at every sweep.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        horizon = now - self.retention_ms
        store: Any = self.table.data
        pruned = deleted = 0
        for partition in sorted(partitions):
            db = getattr(store, "_dbs", {}).get(partition)
            if db is None:
                continue
            marker = _PartitionEvent(source_topic, partition)
            expired: list[tuple[bytes, dict[str, Any] | None]] = []
            for n, (key, raw) in enumerate(db.items(read_opt=_scan_options())):
                if n % chunk == chunk - 1:
                    await asyncio.sleep(0)  # a big ledger must not starve the agents
                if not isinstance(key, bytes) or key.startswith(b"__faust"):
                    continue
                value = _load(raw)
                live = {
                    k: v for k, v in value.items() if k == QUARANTINE or v.get("last_seen_ms", 0) >= horizon
                }
                if len(live) == len(value):
                    continue
                expired.append((key, live or None))
                if len(expired) >= chunk:
                    p, d = self._apply_expiry(marker, expired)
                    pruned, deleted, expired = pruned + p, deleted + d, []
                    await self._changelog_drained(chunk)
            p, d = self._apply_expiry(marker, expired)
            pruned, deleted = pruned + p, deleted + d
        return pruned, deleted

    def _apply_expiry(
        self, marker: _PartitionEvent, expired: list[tuple[bytes, dict[str, Any] | None]]
    ) -> tuple[int, int]:
        pruned = deleted = 0
        with as_current(marker):  # type: ignore[arg-type]
            for key, remaining in expired:
                self._put(key, remaining)
                if remaining is None:
                    deleted += 1
                else:
                    pruned += 1
        return pruned, deleted

    async def _changelog_drained(self, limit: int) -> None:
        """Wait while more than `limit` changelog records wait in faust's producer buffer."""
        buffer = getattr(getattr(self.table.app, "producer", None), "buffer", None)
        while buffer is not None and buffer.size > limit:
            await asyncio.sleep(0.005)

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
            value = _load(self._get(raw))
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
            value[key] = entry.to_json()
            horizon = now - self.retention_ms
            for other in [
                k for k, v in value.items() if k not in (key, QUARANTINE) and v["last_seen_ms"] < horizon
            ]:
                del value[other]
            self._put(raw, value)
        if self.on_write is not None:
            self.on_write(state)
        return entry


def entry_in(value: Mapping[str, Any], key: str) -> LedgerEntry | None:
    """The entry of idempotency key `key` in an entity's value (from `Ledger.load`)."""
    if key == QUARANTINE or key not in value:
        return None
    return LedgerEntry.from_json(value[key])


def _scan_options() -> Any:
    """Read options for a full scan: do not fill the block cache with what it reads."""
    options = rocksdict.ReadOptions()
    options.fill_cache(False)  # type: ignore[call-arg]  # the stub lacks the argument
    return options


def _load(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def quarantine_in(value: Mapping[str, Any]) -> Quarantine | None:
    """The quarantine in an entity's value (from `Ledger.load`), if it has one."""
    q = value.get(QUARANTINE)
    if not q:
        return None
    return Quarantine(
        str(q["blocker"]),
        str(q.get("blocker_key", "")),
        int(q.get("since", 0)),
        tuple(ParkedRecord.from_json(p) for p in q.get("parked", ())),
    )


class _PartitionEvent:
    """Stands in for faust's current event when the ledger is written outside a stream."""

    class _Message:
        def __init__(self, topic: str, partition: int) -> None:
            self.topic = topic
            self.partition = partition

    def __init__(self, topic: str, partition: int) -> None:
        self.message = self._Message(topic, partition)
