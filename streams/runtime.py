"""The engine: one faust app running every declared handler idempotently.

Per handler: an agent on the source topic and one on `<source>.retry`, both writing
the handler's ledger table (co-partitioned: retries go to the same partition number
as their origin). Records are taken in batches (`take_events`); for each record:

    decode (writer schema by ID, resolved to the handler's schema)
      undecodable -> dead-letter (bytes untouched) + DEAD_LETTERED
      registry unreachable -> wait and retry (an outage is not the record's fault)
    ledger[entity][idempotency key] COMPLETED -> SKIPPED_DUPLICATE
    run the handler (deadline) -> COMPLETED + SUCCEEDED
      transient -> RETRYING + backoff, in-process, `attempts` times;
                   then to the retry topic (FAILED) with a not-before time;
                   dead-lettered (DEAD_LETTERED) when the budget is spent
      permanent -> dead-letter + DEAD_LETTERED

Every status, retry and dead-letter write of a batch is acknowledged by the broker
before the batch's records are acked, and faust commits only acked offsets (after
flushing its producer), so an outcome is durable before its offset is committed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from faust.types import EventT, TopicT

from streams.codec import AvroCodec, CodecError
from streams.context import EventContext
from streams.faust_transport import StreamsApp
from streams.handlers import BatchHandler, EventHandler, HandlerSpec, ItemResult
from streams.ledger import (
    DEFAULT_RETENTION_S,
    Ledger,
    LedgerEntry,
    ParkedRecord,
    State,
    as_current,
    entry_in,
    quarantine_in,
)
from streams.metrics import Metrics
from streams.outcomes import (
    H_ATTEMPT,
    H_ERROR_CLASS,
    H_ERROR_MESSAGE,
    H_FIRST_FAILURE,
    H_HANDLER,
    H_HOP,
    H_LAST_FAILURE,
    H_NOT_BEFORE,
    H_REASON,
    Origin,
    Outcome,
    now_ms,
    placeholder_event_id,
    status_record,
)
from streams.redaction import error_class, safe_message, sensitive_values
from streams.retry import HandlerTimeout
from streams.schema_registry import RegistryUnavailable
from streams.schemas import AvroSchema, sensitive_fields
from streams.security import client_config, faust_credentials
from streams.sinks import DeliveryGroup, KafkaSink
from streams.watchdog import Watchdog
from streams.web import add_views

if TYPE_CHECKING:
    from streams.app import App
    from streams.config import Settings

log = logging.getLogger("streams.runtime")

STATUS_TOPIC = "streams.status"
STATUS_SCHEMA = "streams.status"


def _kv(**fields: object) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


@dataclass
class Delivery:
    """One record being processed, with what is known about it so far."""

    event: EventT[bytes]
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    origin: Origin
    received_ms: int
    record: dict[str, Any] | None = None
    entity_id: str = ""
    event_id: str = ""
    idempotency_key: str = ""
    attempt: int = 0
    secrets: list[str] = field(default_factory=list)

    @property
    def coordinates(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


#: RocksDB memory of each ledger partition. Faust's defaults (3 x 64 MB memtables, a
#: 2 GiB block cache per partition) let one worker's RSS plateau at 357 MB in the memory
#: benchmark; these hold it at 173 MB (bench/results/memory-20261205T010838Z.json). The
#: ledger is read by key, mostly for recent entities, so a small cache serves it.
LEDGER_ROCKSDB = {
    "write_buffer_size": 16 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 64 * 1024 * 1024,
}


class HandlerRuntime:
    """Runs one handler: its agents, its ledger, its retry and dead-letter topics."""

    def __init__(self, runtime: Runtime, spec: HandlerSpec, partitions: int) -> None:
        self.rt = runtime
        self.spec = spec
        settings = runtime.settings
        self.source_name = settings.topic(spec.topic)
        self.retry_name = f"{self.source_name}.retry"
        self.dlq_name = f"{self.source_name}.dlq"
        self.partitions = partitions
        #: batches between take and ack (the watchdog leaves a busy handler's partitions alone)
        #: (topic, partition) -> batches in flight holding records of it (for the watchdog).
        self.partitions_in_flight: dict[tuple[str, int], int] = {}
        fapp = runtime.faust
        self.source = runtime.raw_topic(self.source_name, partitions)
        self.retry_topic = runtime.raw_topic(self.retry_name, partitions)
        self.dlq = runtime.raw_topic(self.dlq_name, partitions)
        table = fapp.Table(
            f"{spec.name}-ledger",
            partitions=partitions,
            # Keys and values are bytes the ledger encodes itself, so the live path and
            # changelog recovery cannot disagree about serializers.
            key_type=bytes,
            value_type=bytes,
            options={"driver": "rocksdict", **LEDGER_ROCKSDB},
        )
        writes = runtime.metrics.ledger_writes
        # prometheus' labels() takes a lock and hashes its arguments: look children up once.
        write_counters = {state: writes.labels(spec.name, state) for state in get_args(State)}
        self.ledger = Ledger(table, runtime.retention_s, on_write=lambda state: write_counters[state].inc())
        self.duration = runtime.metrics.duration.labels(spec.name)
        self.reader: AvroSchema = runtime.reader_schema(spec)
        self.sensitive = sorted(sensitive_fields(self.reader))
        self.rng = random.Random()
        self._statuses: dict[int, list[tuple[bytes, bytes]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        take = spec.batch.max_records if spec.batch else 500
        within = spec.batch.max_wait_s if spec.batch else settings.batch_window_ms / 1000

        async def source_agent(stream: Any) -> None:
            # take_events is faust-streaming's; StreamT's stubs predate it.
            async for events in stream.take_events(take, within):
                await self.guarded_batch(events, from_retry=False)

        async def retry_agent(stream: Any) -> None:
            async for events in stream.take_events(take, within):
                await self.guarded_batch(events, from_retry=True)

        fapp.agent(self.source, name=f"{spec.name}.source")(source_agent)
        fapp.agent(self.retry_topic, name=f"{spec.name}.retry")(retry_agent)

    # -- batches ---------------------------------------------------------------------
    async def guarded_batch(self, events: Sequence[EventT[bytes]], *, from_retry: bool) -> None:
        """Process a batch, or make sure none of its offsets can be committed.

        faust's `take_events` acks every event of a batch when the batch ends, however it
        ends. An unfinished batch must not be acked: on cancellation its events are marked
        so the consumer never records them (the gap holds the committed offset back until
        they are redelivered); on any other error the worker stops at once (fail-stop) and
        its records are redelivered to whoever takes the partition.
        """
        try:
            await self.process_batch(events, from_retry=from_retry)
        except asyncio.CancelledError:
            _never_commit(events)
            raise
        except BaseException:
            _never_commit(events)
            log.critical(
                "batch failed; stopping the worker so its records are redelivered %s",
                _kv(handler=self.spec.name, records=len(events)),
                exc_info=True,
            )
            logging.shutdown()
            os._exit(70)

    async def process_batch(self, events: Sequence[EventT[bytes]], *, from_retry: bool) -> None:
        in_flight = self.rt.metrics.in_flight.labels(self.spec.name)
        in_flight.inc(len(events))
        partitions = {(e.message.topic, e.message.partition) for e in events}
        busy = self.partitions_in_flight
        for key in partitions:
            busy[key] = busy.get(key, 0) + 1
        try:
            await self._process_batch(events, from_retry=from_retry)
        finally:
            for key in partitions:
                busy[key] -= 1
                if not busy[key]:
                    del busy[key]
            in_flight.dec(len(events))

    async def _process_batch(self, events: Sequence[EventT[bytes]], *, from_retry: bool) -> None:
        pending: list[Awaitable[Any]] = []
        deliveries: list[Delivery] = []
        for event in events:
            delivery = self._delivery(event)
            if from_retry:
                if delivery.headers.get(H_HANDLER, b"").decode(errors="replace") != self.spec.name:
                    continue  # another handler's retry on a shared source topic
                await self._wait_not_before(delivery)
            if await self._decode(delivery, pending):
                deliveries.append(delivery)
        if deliveries:
            if self.spec.batch is not None:
                await self._run_batch(deliveries, pending)
            elif self.spec.concurrency <= 1:
                for delivery in deliveries:
                    await self._run_one(delivery, pending)
            else:
                await self._run_by_entity(deliveries, pending)
        await self._flush_statuses(pending)
        if pending and self.rt.settings.durability == "safe":
            # Durable before ack: the records' offsets commit only after this returns.
            await asyncio.gather(*pending)

    def _delivery(self, event: EventT[bytes]) -> Delivery:
        message = event.message
        headers: dict[str, bytes] = {}
        raw_headers = message.headers or ()
        pairs = raw_headers.items() if isinstance(raw_headers, Mapping) else raw_headers
        for name, value in pairs:
            headers[str(name)] = value if isinstance(value, bytes) else str(value or "").encode()
        timestamp_ms = int(message.timestamp * 1000)
        origin = Origin.of(message.topic, message.partition, message.offset, timestamp_ms, headers)
        return Delivery(
            event=event,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=timestamp_ms,
            key=message.key,
            value=message.value,
            headers=headers,
            origin=origin,
            received_ms=now_ms(),
            attempt=origin.attempt,
        )

    async def _wait_not_before(self, d: Delivery) -> None:
        try:
            not_before = int(d.headers.get(H_NOT_BEFORE, b"0").decode())
        except ValueError:
            not_before = 0
        delay = (not_before - now_ms()) / 1000
        if delay > 0:
            await asyncio.sleep(delay)

    async def _decode(self, d: Delivery, pending: list[Awaitable[Any]]) -> bool:
        delay = 0.5
        while True:
            try:
                if d.value is None:
                    raise _NoValue("record has no value (a tombstone?)")
                record = self.rt.codec.decode(d.value, self.reader)
                break
            except RegistryUnavailable as exc:
                self.rt.metrics.registry_waits.inc()
                log.warning(
                    "registry unreachable, holding the record %s",
                    _kv(
                        handler=self.spec.name,
                        topic=d.topic,
                        partition=d.partition,
                        offset=d.offset,
                        error=exc,
                    ),
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except (CodecError, _NoValue) as exc:
                d.event_id = placeholder_event_id(d.origin.topic, d.origin.partition, d.origin.offset)
                d.entity_id = d.key.decode(errors="replace") if d.key else ""
                d.idempotency_key = d.event_id
                d.attempt += 1
                self.rt.metrics.decode_errors.labels(self.spec.name, type(exc).__name__).inc()
                await self._dead_letter(d, exc, pending, reason="undecodable", started_ms=d.received_ms)
                return False
        d.record = record
        d.event_id = str(record.get("event_id", "")) or placeholder_event_id(d.topic, d.partition, d.offset)
        d.entity_id = d.key.decode(errors="replace") if d.key else str(record.get("entity_id", ""))
        d.secrets = sensitive_values(record, self.sensitive)
        try:
            d.idempotency_key = self.spec.key_for(record)
        except Exception as exc:  # a bad key function is the event's or code's fault
            d.attempt += 1
            await self._dead_letter(d, exc, pending, reason="no-idempotency-key", started_ms=d.received_ms)
            return False
        return True

    async def _run_by_entity(self, deliveries: list[Delivery], pending: list[Awaitable[Any]]) -> None:
        """Entities run concurrently (slow side effects overlap); each entity's events in order."""
        groups: dict[str, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(d.entity_id, []).append(d)
        if len(groups) == 1:
            for d in deliveries:
                await self._run_one(d, pending)
            return
        # `concurrency` runners take groups in turn: a batch of 500 entities costs that many
        # tasks, not 500 (a task per group was 5 % of a no-op handler's CPU, bench/PROFILE.md).
        queue = iter(list(groups.values()))

        async def runner() -> None:
            for group in queue:
                for d in group:
                    await self._run_one(d, pending)

        await asyncio.gather(*(runner() for _ in range(min(self.spec.concurrency, len(groups)))))

    # -- single events -----------------------------------------------------------------
    def _duplicate(
        self, d: Delivery, pending: list[Awaitable[Any]], value: Mapping[str, Any] | None = None
    ) -> bool:
        """True (and its status sent) if the key is COMPLETED already; `value` is the entity's
        ledger value if the caller read it with no ledger write since (`Ledger.writes`)."""
        if value is None:
            value = self.ledger.load(d.event, d.entity_id)
        entry = entry_in(value, d.idempotency_key)
        if entry is None or entry.state != "COMPLETED":
            return False
        now = now_ms()
        if entry.completed_by == d.coordinates:
            if self.rt.app.guarantee == "exactly_once":
                # Under transactions a redelivery proves the transaction that completed it
                # never committed (the offset commit is part of it): the local store is
                # ahead of what happened. Run it again.
                return False
            # At least once: the very record that completed, delivered again because the
            # worker died before its offset was committed (maybe before its status was
            # sent). Its side effect happened; say so again. The completion may have
            # reached only this state directory, not the changelog (the worker died
            # before its producer flushed): write it again, or the next owner of the
            # partition would run the records after this one as if never done.
            self.ledger.rewrite(d.event, d.entity_id)
            self._status(d, "SUCCEEDED", pending, started_ms=now, finished_ms=now, attempt=entry.attempts)
            return True
        self._status(
            d,
            "SKIPPED_DUPLICATE",
            pending,
            started_ms=now,
            finished_ms=now,
            duplicate_of=entry.event_id,
            attempt=max(d.attempt, 1),
            original=entry,
        )
        return True

    def _context(self, d: Delivery) -> EventContext:
        return EventContext(
            handler=self.spec.name,
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            timestamp_ms=d.timestamp_ms,
            entity_id=d.entity_id,
            event_id=d.event_id,
            idempotency_key=d.idempotency_key,
            attempt=d.attempt,
            workspace=self.rt.settings.workspace,
            headers=d.headers,
            origin_topic=d.origin.topic,
            origin_partition=d.origin.partition,
            origin_offset=d.origin.offset,
        )

    async def _run_one(self, d: Delivery, pending: list[Awaitable[Any]]) -> None:
        # One read of the entity answers both the quarantine and the duplicate question.
        writes = self.ledger.writes
        value = self.ledger.load(d.event, d.entity_id)
        quarantine = None
        if self.spec.ordering == "entity" and d.entity_id:
            quarantine = quarantine_in(value)
            if quarantine is not None and quarantine.blocker_event_id != d.event_id:
                self._park(d, quarantine.blocker_event_id, pending)
                return
        # One delivery of an idempotency key at a time: the source and retry agents may
        # hold two deliveries of one key, and the second must see the first's outcome.
        key = d.idempotency_key
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        users = self._lock_users
        users[key] = users.get(key, 0) + 1
        try:
            async with lock:
                # `value` is still current unless the ledger was written meanwhile (this
                # delivery waited for the lock, or another runner wrote while it yielded).
                fresh = value if self.ledger.writes == writes else None
                finished = await self._attempts(d, pending, fresh)
        finally:
            users[key] -= 1
            if not users[key]:
                del users[key], self._locks[key]
        # A blocker that completed releases its entity's parked events (outside the lock:
        # they may share the idempotency key).
        if finished and quarantine is not None:
            await self._release(d, pending)

    async def _attempts(
        self, d: Delivery, pending: list[Awaitable[Any]], value: Mapping[str, Any] | None = None
    ) -> bool:
        """Run the handler with in-process retries; True if the key is now COMPLETED."""
        if self._duplicate(d, pending, value):
            return True
        func: EventHandler = self.spec.func  # type: ignore[assignment]
        policy = self.spec.retry
        for in_delivery in range(1, policy.attempts + 1):
            if in_delivery > 1 and self._duplicate(d, pending):
                return True  # another delivery completed it while this one backed off
            d.attempt += 1
            if d.attempt > 1:
                # A retry under way is worth a ledger write; a first attempt is not (it
                # would double the changelog traffic of the hot path).
                self._record(d, "IN_PROGRESS")
            started = now_ms()
            t0 = time.monotonic()
            assert d.record is not None
            ctx = self._context(d)
            try:
                self.rt.watchdog.started(d.topic, d.partition, self.spec.name, d.event_id)
                try:
                    # Not wait_for: that wraps every call in a Task of its own (bench/PROFILE.md §4).
                    async with asyncio.timeout(self.spec.deadline_s):
                        await func(d.record, ctx)
                finally:
                    self.rt.watchdog.finished(d.topic, d.partition)
                await self._send_outbox(d, ctx, pending)
            except TimeoutError:
                exc: BaseException = HandlerTimeout(
                    f"handler ran past its {self.spec.deadline_s:g}s deadline"
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                exc = err
            else:
                self._completed(d, pending, started, t0)
                return True
            if await self._after_failure(d, exc, pending, started, t0, in_delivery):
                return False
            await asyncio.sleep(policy.backoff(in_delivery, self.rng))
        return False

    def _record(self, d: Delivery, state: State, **extra: Any) -> None:
        """Write this delivery's attempt count and `state` to the ledger."""
        self.ledger.record(
            d.event, d.entity_id, d.idempotency_key, state, d.event_id, attempts=d.attempt, **extra
        )

    def _completed(self, d: Delivery, pending: list[Awaitable[Any]], started: int, t0: float) -> None:
        finished = now_ms()  # one clock reading: the ledger and the status agree
        self._record(d, "COMPLETED", delivery=d.coordinates, now_ms=finished)
        self._status(d, "SUCCEEDED", pending, started_ms=started, t0=t0, finished_ms=finished)

    async def _after_failure(
        self,
        d: Delivery,
        exc: BaseException,
        pending: list[Awaitable[Any]],
        started: int,
        t0: float,
        in_delivery: int,
    ) -> bool:
        """Record a failed attempt; True if the delivery is finished (retry topic or DLQ)."""
        policy = self.spec.retry
        cls = error_class(exc)
        self._record(d, "FAILED", error_class=cls)
        transient = policy.is_transient(exc)
        log.info(
            "handler failed %s",
            _kv(
                handler=self.spec.name,
                event_id=d.event_id,
                entity_id=d.entity_id,
                attempt=d.attempt,
                error_class=cls,
                transient=transient,
            ),
        )
        if transient and in_delivery < policy.attempts:
            self._status(d, "RETRYING", pending, started_ms=started, t0=t0, exc=exc)
            return False
        if transient and d.origin.hop < policy.retry_topic_hops:
            await self._to_retry_topic(d, exc, pending)
            self._hold(d)
            self._status(d, "FAILED", pending, started_ms=started, t0=t0, exc=exc)
            return True
        self._hold(d)
        await self._dead_letter(
            d,
            exc,
            pending,
            reason="permanent" if not transient else "retries-exhausted",
            started_ms=started,
            t0=t0,
        )
        return True

    # -- entity quarantine ------------------------------------------------------------------
    def _hold(self, d: Delivery) -> None:
        """Later events of this entity wait until this one succeeds (retry or redrive)."""
        if self.spec.ordering == "entity" and d.entity_id:
            self.ledger.hold(d.event, d.entity_id, d.event_id, d.idempotency_key)

    def _park(self, d: Delivery, blocker: str, pending: list[Awaitable[Any]]) -> None:
        record = ParkedRecord(
            key=d.key,
            value=d.value,
            headers=tuple(d.headers.items()),
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            timestamp_ms=d.timestamp_ms,
            event_id=d.event_id,
        )
        before = self.ledger.quarantine(d.event, d.entity_id)
        count = self.ledger.park(d.event, d.entity_id, record)
        if before is None or count > len(before.parked):
            self.rt.metrics.parked.labels(self.spec.name).inc()
        now = now_ms()
        self._status(
            d,
            "PARKED",
            pending,
            started_ms=now,
            finished_ms=now,
            parked_behind=blocker,
            attempt=max(d.attempt, 1),
        )

    async def _release(self, d: Delivery, pending: list[Awaitable[Any]]) -> None:
        """The blocker succeeded: run the entity's parked events, in arrival order."""
        parked = self.ledger.release(d.event, d.entity_id)
        if not parked:
            return
        self.rt.metrics.parked.labels(self.spec.name).dec(len(parked))
        log.info(
            "releasing parked events %s",
            _kv(handler=self.spec.name, entity_id=d.entity_id, count=len(parked), after=d.event_id),
        )
        for record in parked:
            headers = dict(record.headers)
            released = Delivery(
                event=d.event,  # same entity, so the same ledger partition
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp_ms,
                key=record.key,
                value=record.value,
                headers=headers,
                origin=Origin.of(record.topic, record.partition, record.offset, record.timestamp_ms, headers),
                received_ms=now_ms(),
            )
            released.attempt = released.origin.attempt
            if await self._decode(released, pending):
                await self._run_one(released, pending)

    # -- batches of items ------------------------------------------------------------------
    async def _run_batch(self, deliveries: list[Delivery], pending: list[Awaitable[Any]]) -> None:
        func: BatchHandler = self.spec.func  # type: ignore[assignment]
        policy = self.spec.retry
        todo = [d for d in deliveries if not self._duplicate(d, pending)]
        for in_delivery in range(1, policy.attempts + 1):
            if not todo:
                return
            for d in todo:
                d.attempt += 1
                self._record(d, "IN_PROGRESS")
            started = now_ms()
            t0 = time.monotonic()
            records = [d.record for d in todo]
            ctxs = [self._context(d) for d in todo]
            try:
                results: Sequence[ItemResult] = await asyncio.wait_for(
                    func(records, ctxs),  # type: ignore[arg-type]
                    self.spec.deadline_s,
                )
                if len(results) != len(todo):
                    raise RuntimeError(f"batch handler returned {len(results)} results for {len(todo)} items")
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                timeout = HandlerTimeout(f"batch ran past its {self.spec.deadline_s:g}s deadline")
                results = [ItemResult.failure(timeout) for _ in todo]
            except Exception as exc:
                results = [ItemResult.failure(exc) for _ in todo]
            again = []
            for d, ctx, result in zip(todo, ctxs, results, strict=True):
                if result.ok:
                    await self._send_outbox(d, ctx, pending)
                    self._completed(d, pending, started, t0)
                else:
                    assert result.error is not None
                    if not await self._after_failure(d, result.error, pending, started, t0, in_delivery):
                        again.append(d)
            todo = again
            if todo:
                await asyncio.sleep(policy.backoff(in_delivery, self.rng))

    # -- writes ------------------------------------------------------------------------------
    async def _flush_statuses(self, pending: list[Awaitable[Any]]) -> None:
        records = self._statuses.pop(id(pending), None)
        if not records:
            return
        sink = self.rt.sink
        assert sink is not None
        group = DeliveryGroup()
        pending.append(group.future)
        for key, value in records:
            while not sink.try_send(self.rt.status_topic_name, key, value, group):
                await asyncio.sleep(0.005)  # librdkafka's queue is full: let it drain
        group.seal()

    async def _send_outbox(self, d: Delivery, ctx: EventContext, pending: list[Awaitable[Any]]) -> None:
        """Encode every `ctx.emit` of a successful attempt (all or none) and send it."""
        encoded = []
        for topic, event in ctx.outbox:
            name = self.rt.settings.topic(topic)
            contract = self.rt.app.contract(topic)
            value = self.rt.codec.encode(f"{name}-value", dict(event), contract.schema)
            key = str(event.get("entity_id", d.entity_id)).encode()
            encoded.append((name, key, value))
        if not encoded:
            return
        fapp = self.rt.faust
        if self.rt.app.guarantee == "exactly_once":
            # faust would pick the transaction of the *destination* partition; the source
            # offset commits in the transaction of the *source* partition. Write into that
            # one, so the effect and the offset commit or abort together.
            group = fapp.assignor.group_for_topic(d.topic)
            transactional_id = f"{fapp.conf.id}-{group}-{d.partition}"
            for name, key, value in encoded:
                pending.append(
                    await fapp.producer.send(
                        name, key, value, None, None, None, transactional_id=transactional_id
                    )
                )
            return
        for name, key, value in encoded:
            pending.append(self.rt.raw_topic(name).send_soon(key=key, value=value))

    def _failure_headers(self, d: Delivery, exc: BaseException) -> list[tuple[str, bytes]]:
        now = now_ms()
        first = d.origin.first_failure_ms or now
        return [
            *d.origin.headers(),
            (H_HANDLER, self.spec.name.encode()),
            (H_ATTEMPT, str(d.attempt).encode()),
            (H_ERROR_CLASS, error_class(exc).encode()),
            (H_ERROR_MESSAGE, safe_message(exc, d.secrets).encode()),
            (H_FIRST_FAILURE, str(first).encode()),
            (H_LAST_FAILURE, str(now).encode()),
        ]

    async def _to_retry_topic(self, d: Delivery, exc: BaseException, pending: list[Awaitable[Any]]) -> None:
        hop = d.origin.hop + 1
        not_before = now_ms() + int(self.spec.retry.retry_delay(hop) * 1000)
        headers = [
            *self._failure_headers(d, exc),
            (H_HOP, str(hop).encode()),
            (H_NOT_BEFORE, str(not_before).encode()),
        ]
        with as_current(d.event):
            fut = await self.retry_topic.send(
                key=d.key, value=d.value, partition=d.origin.partition, headers=headers
            )
        pending.append(fut)
        self.rt.metrics.retries.labels(self.spec.name).inc()

    async def _dead_letter(
        self,
        d: Delivery,
        exc: BaseException,
        pending: list[Awaitable[Any]],
        *,
        reason: str,
        started_ms: int,
        t0: float | None = None,
    ) -> None:
        headers = [*self._failure_headers(d, exc), (H_REASON, reason.encode())]
        # Retries carry their source as origin, so this is always `<source>.dlq`.
        with as_current(d.event):
            fut = await self.dlq.send(key=d.key, value=d.value, partition=d.origin.partition, headers=headers)
        # The dead letter must be on the broker before anything else about this record.
        await fut
        self.rt.metrics.dead_letters.labels(self.spec.name, reason).inc()
        log.warning(
            "dead-lettered %s",
            _kv(
                handler=self.spec.name,
                event_id=d.event_id,
                entity_id=d.entity_id,
                topic=d.topic,
                partition=d.partition,
                offset=d.offset,
                reason=reason,
                error_class=error_class(exc),
            ),
        )
        self._status(d, "DEAD_LETTERED", pending, started_ms=started_ms, t0=t0, exc=exc)

    def _status(
        self,
        d: Delivery,
        outcome: Outcome,
        pending: list[Awaitable[Any]],
        *,
        started_ms: int,
        t0: float | None = None,
        finished_ms: int | None = None,
        exc: BaseException | None = None,
        duplicate_of: str | None = None,
        attempt: int | None = None,
        original: LedgerEntry | None = None,
        parked_behind: str | None = None,
    ) -> None:
        finished = finished_ms if finished_ms is not None else now_ms()
        if t0 is not None:
            elapsed = time.monotonic() - t0
            self.duration.observe(elapsed)
            duration = int(elapsed * 1000)
        else:
            duration = max(0, finished - started_ms)
        record = status_record(
            app=self.rt.app.name,
            workspace=self.rt.settings.workspace,
            handler=self.spec.name,
            outcome=outcome,
            event_id=d.event_id,
            entity_id=d.entity_id,
            idempotency_key=d.idempotency_key,
            attempt=attempt if attempt is not None else max(d.attempt, 1),
            topic=d.topic,
            partition=d.partition,
            offset=d.offset,
            received_ms=d.received_ms,
            started_ms=started_ms,
            finished_ms=finished,
            duration_ms=duration,
            error_class=error_class(exc) if exc is not None else None,
            error_message=safe_message(exc, d.secrets) if exc is not None else None,
            duplicate_of=duplicate_of,
            original_outcome="SUCCEEDED" if original is not None else None,
            original_finished_ms=original.completed_at_ms if original is not None else None,
            parked_behind=parked_behind,
        )
        value = self.rt.codec.encode(self.rt.status_subject, record, self.rt.status_schema)
        key = d.entity_id.encode()
        if self.rt.sink is not None:
            # Produced together at the end of the batch (`_flush_statuses`), which may wait
            # for librdkafka's queue without ever blocking the event loop.
            self._statuses.setdefault(id(pending), []).append((key, value))
        else:
            with as_current(d.event):
                pending.append(self.rt.status_topic.send_soon(key=key, value=value))
        self.rt.count(self.spec.name, outcome)


def _never_commit(events: Sequence[EventT[bytes]]) -> None:
    # A message already flagged acked is skipped by the consumer's ack bookkeeping, so its
    # offset is never committed (faust commits only up to the first gap).
    for event in events:
        event.message.acked = True


class _NoValue(CodecError):
    pass


class Runtime:
    """Builds the faust app for an `App`'s handlers under one `Settings`."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        partitions: Mapping[str, int],
        web_port: int = 6066,
        codec: AvroCodec,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec
        self.retention_s = retention_s
        app_id = settings.topic(app.name)
        assert settings.kafka_bootstrap
        datadir = Path(settings.state_dir) / "workers" / app_id
        datadir.mkdir(parents=True, exist_ok=True)
        self.faust = StreamsApp(
            app_id,
            broker=";".join(f"kafka://{s}" for s in settings.kafka_bootstrap.split(",")),
            broker_credentials=faust_credentials(settings),
            store="rocksdb://",
            datadir=str(datadir),
            processing_guarantee=app.guarantee,
            producer_acks=-1 if settings.durability == "safe" else 1,
            consumer_auto_offset_reset="earliest",
            topic_partitions=max(partitions.values(), default=1),
            topic_allow_declare=True,
            web_port=web_port,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            table_cleanup_interval=60.0,
            stream_recovery_delay=0.0,
            broker_request_timeout=90.0,
            # A SIGKILLed worker's partitions move after 10 s, not faust's default minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=settings.standby_replicas,
        )
        self.status_topic = self.faust.topic(
            settings.topic(settings.status_topic),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        self.status_topic_name = settings.topic(settings.status_topic)
        self.status_subject = f"{self.status_topic_name}-value"
        # Under transactions statuses must join faust's transaction; otherwise librdkafka
        # carries them far cheaper than faust's per-message futures.
        self.sink: KafkaSink | None = None
        if app.guarantee != "exactly_once":
            self.sink = KafkaSink(
                settings.kafka_bootstrap,
                acks="all" if settings.durability == "safe" else "1",
                extra=client_config(settings),
            )
            sink = self.sink

            @self.faust.on_before_shutdown.connect  # type: ignore[arg-type]
            async def _close_sink(app: Any, **kwargs: Any) -> None:
                sink.close()

        self.status_schema = app.contract(STATUS_TOPIC).schema
        self.metrics = Metrics()
        self.watchdog = Watchdog(self, settings.watchdog_s)
        self.faust.timer(max(0.2, settings.watchdog_s / 4), name="streams.watchdog")(self.watchdog.check)
        # Expired ledger entries leave RocksDB and (as tombstones) the changelog.
        self.faust.timer(max(1.0, min(3600.0, retention_s / 10)), name="streams.ledger_sweep")(
            self.sweep_ledgers
        )
        self.outcomes: dict[tuple[str, str], int] = {}
        self._event_counters: dict[tuple[str, str], Any] = {}
        self.handlers = {
            spec.name: HandlerRuntime(self, spec, partitions[settings.topic(spec.topic)])
            for spec in app.handlers
        }
        add_views(self)

    def raw_topic(self, name: str, partitions: int | None = None) -> TopicT:
        """A topic of raw key and value bytes: the runtime does its own decoding."""
        return self.faust.topic(
            name,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    def reader_schema(self, spec: HandlerSpec) -> AvroSchema:
        return self.app.contract(spec.schema or spec.topic).schema

    def count(self, handler: str, outcome: str) -> None:
        key = (handler, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        counter = self._event_counters.get(key)
        if counter is None:
            counter = self._event_counters[key] = self.metrics.events.labels(handler, outcome)
        counter.inc()

    def refresh_gauges(self) -> None:
        """Lag per assigned partition (from the consumer's view) and ledger sizes."""
        fapp = self.faust
        try:
            assigned = fapp.consumer.assignment()
        except Exception:
            return
        for tp in assigned:
            try:
                hw = fapp.consumer.highwater(tp)
                position = fapp.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
            except Exception:
                continue
            if hw is not None:
                lag = max(0, hw - (position or 0))
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
        for name, h in self.handlers.items():
            self.metrics.ledger_entities.labels(name).set(h.ledger.approximate_size())

    async def sweep_ledgers(self) -> None:
        try:
            assigned = self.faust.consumer.assignment()
        except Exception:
            return
        for name, h in self.handlers.items():
            partitions = {tp.partition for tp in assigned if tp.topic == h.source_name}
            if not partitions:
                continue
            pruned, deleted = await h.ledger.sweep(partitions, h.source_name)
            if pruned or deleted:
                log.info("ledger sweep %s", _kv(handler=name, pruned=pruned, deleted=deleted))

    def readiness(self) -> tuple[bool, str]:
        """Ready when partitions are assigned, no rebalance runs and tables have recovered."""
        fapp = self.faust
        if fapp.rebalancing:
            return False, "rebalancing"
        if not fapp.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return False, "recovering tables"
        try:
            assigned = fapp.consumer.assignment()
        except Exception:
            return False, "consumer not started"
        sources = {h.source_name for h in self.handlers.values()}
        if not any(tp.topic in sources for tp in assigned):
            return False, "no source partitions assigned"
        if self.watchdog.stuck:
            return False, "stuck: " + "; ".join(self.watchdog.describe())
        return True, "ok"
