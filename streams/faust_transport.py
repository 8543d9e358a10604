"""The faust transport streams runs on: faust's aiokafka driver, with its offset bookkeeping fixed.

Faust drops records it has fetched but cannot hand on (a rebalance begins, flow stops,
the partition is paused for recovery, a fetch straddles a seek) and relies on "seek to
committed" and its commit bookkeeping to get them read again. These places let them go
instead, each a silent loss or a stall found by the chaos and cluster tests:

- aiokafka's `seek_to_committed` skips every partition whose committed offset is missing
  or 0, so a partition nobody had committed yet kept its advanced position
  (faust-streaming/faust#629 shows the same symptom). Such a stream partition now goes
  back to its beginning, as `auto_offset_reset=earliest` promises; the ledger absorbs the
  re-reads. Changelog partitions keep faust's positions: recovery tracks those itself.
- faust counts offsets its reader skipped as done ("gaps", meant for transaction markers
  and compaction), so a commit could pass records that were never processed. Without
  transactions nothing but a record occupies an offset: skips now hold the commit.
- duplicate acks (from gap filling) cut faust's run of consecutive offsets short, so the
  commit crawled one offset per interval. They are dropped before the commit is computed.
- a batch fetched before a seek and handed on after it skips records. Each record is
  checked against the next offset expected; past a skip the partition is read again at
  once instead of holding its commit until a rebalance or the watchdog.
- faust records a read offset after an await, undoing a seek made meanwhile (then drops
  the re-read records as seen). A late write can no longer move it past a seek.
- records faust handed on but dropped unacked (an event of an older consumer generation,
  a send cancelled when flow stops) held the commit. One missing for `HOLE_GRACE_S`,
  and neither in processing nor queued, is read again.
- a commit before the seek that tells where an assignment starts could pass records
  below the acked ones: nothing commits until that start is known.

Also: the broker may hold an empty fetch 50 ms, not faust's 1.5 s, which stalled records
of the other partitions under steady load (see bench/PROFILE.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger("streams.faust_transport")


async def rewind_to_committed(
    consumer: aiokafka.AIOKafkaConsumer, keep_topics: Collection[str] = ()
) -> Mapping[TP, int]:
    """Seek every assigned partition to its committed offset, or to its beginning if it has none.

    Partitions of `keep_topics` without a commit keep their position. Returns where each
    partition now reads from: its committed offset, its beginning where it was rewound,
    and None where a kept partition has no commit.
    """
    committed: Mapping[TP, int] = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in keep_topics]
    if not uncommitted:
        return committed
    # Explicit offsets, not `seek_to_beginning`: that leaves the position unset until
    # the reset answers, and faust's livelock check asserts on an unset position.
    starts = await consumer.beginning_offsets(uncommitted)
    for tp, start in starts.items():
        consumer.seek(tp, start)
    return {**committed, **starts}


#: How long the broker may hold a fetch request that finds no new records (faust: 1500).
FETCH_MAX_WAIT_MS = 50


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer: aiokafka.AIOKafkaConsumer = super()._create_worker_consumer(transport)
        # aiokafka keeps one fetch request in flight per broker, built from the partitions
        # that hold no fetched records yet; faust's driver lets the broker hold it 1.5 s
        # when those have nothing new. Records arriving meanwhile on the other partitions
        # waited for it: 1.3-1.9 s stalls under a steady load (bench/PROFILE.md). Read by
        # the consumer when it starts its fetcher.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        result: Mapping[TP, int] = await self.call_thread(self._seek_to_committed_or_beginning)
        return result

    async def _seek_to_committed_or_beginning(self) -> Mapping[TP, int]:
        return await rewind_to_committed(self._ensure_consumer(), self.app.tables.changelog_topics)

    async def seek_on_thread(self, tp: TP, offset: int) -> None:
        """Seek on the consumer's own thread (faust's `seek` calls aiokafka from the app's)."""
        await self.call_thread(self._seek_here, tp, offset)

    async def _seek_here(self, tp: TP, offset: int) -> None:
        self._ensure_consumer().seek(tp, offset)


class _ReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offsets, which a record finishing after a seek can no longer move.

    Faust's reader sets a partition's read offset once the record is handed to its
    agent, after an await. A seek in that await (a rebalance, the watchdog's heal) set
    the read offset back, and the late write moved it forward again past records faust
    then dropped as already read: the hole that held a commit in the 1 -> 3 -> 1 run.
    A record's write counts only if it was handed on since the partition's last seek
    (its offset is below the next one expected); seeks write with `reset`.
    """

    def __init__(self, next_offsets: Mapping[TP, int]) -> None:
        super().__init__(lambda: None)
        self._next = next_offsets

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        expected = self._next.get(tp)
        if expected is None or offset is None or offset < expected:
            super().__setitem__(tp, offset)

    def reset(self, tp: TP, offset: int | None) -> None:
        super().__setitem__(tp, offset)


class _Consumer(faust_aiokafka.Consumer):
    #: How long the offset a commit waits for may be missing (neither acked nor being
    #: processed) before the partition is read again from it.
    HOLE_GRACE_S = 5.0
    #: How often one partition may be taken back to the same missing offset before the
    #: records are taken as gone (deleted by retention): then the commit holds instead.
    MAX_REWINDS = 5

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Per stream partition: where reading (re)started at the last seek to committed.
        #: Everything below it is done, so a commit must start there.
        self._start_offset: dict[TP, int] = {}
        #: Per stream partition: the offset the next record handed on must have.
        self._next_offset: dict[TP, int] = {}
        #: Per partition: the missing offset it was last taken back to, and how often.
        self._rewinds: dict[TP, tuple[int, int]] = {}
        self._read_offset = self._read_offsets = _ReadOffsets(self._next_offset)
        #: Per partition: the offset its commit waits for, and since when (monotonic).
        self._holes: dict[TP, tuple[int, float]] = {}
        self._rereads: dict[TP, asyncio.Future[None]] = {}
        self._clock = time.monotonic

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # faust's, keeping where each partition starts (faust maps a start of 0 to "no
        # commit", which cannot be told apart from "not known yet").
        self.record_seek(await self.seek_to_committed())

    def record_seek(self, starts: Mapping[TP, int | None]) -> None:
        """Record where each partition reads from after a seek (faust's read and committed
        offsets, and ours)."""
        for tp, offset in starts.items():
            tp = ensure_TP(tp)
            if offset is None or offset < 0:
                self._forget(tp)
                self._read_offsets.reset(tp, None)
                continue
            self._next_offset[tp] = offset
            self._read_offsets.reset(tp, offset)
            self._committed_offset[tp] = offset or None
            self._start_offset[tp] = offset

    async def seek(self, partition: TP, offset: int) -> None:
        # faust's, on the consumer's thread, with the read offset written as a seek.
        tp = ensure_TP(partition)
        await self._consumer_thread().seek_on_thread(tp, offset)
        self._next_offset[tp] = offset
        self._read_offsets.reset(tp, offset or None)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._forget(tp)
        await super().on_partitions_revoked(revoked)

    def _consumer_thread(self) -> _ConsumerThread:
        thread = self._thread
        assert isinstance(thread, _ConsumerThread)
        return thread

    def _forget(self, tp: TP) -> None:
        self._holes.pop(tp, None)
        self._start_offset.pop(tp, None)
        self._next_offset.pop(tp, None)
        self._rewinds.pop(tp, None)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        # A record further on than the next expected one means records were skipped: a
        # batch fetched before a seek and handed over after it, or records faust dropped
        # (a paused partition, a stopped flow). Hand none of that partition's records on
        # in this batch and take the consumer back to the first missing offset, so they
        # are read now rather than holding the commit until a rebalance or the watchdog.
        held: set[TP] = set()
        async for tp, message in super().getmany(timeout):
            if tp in held:
                continue
            expected = self._next_offset.get(tp)
            offset = message.offset
            if expected is None or offset == expected:
                self._next_offset[tp] = offset + 1
                self._rewinds.pop(tp, None)
            elif offset > expected and self._tracks(tp) and await self._rewind(tp, expected, offset):
                held.add(tp)
                continue
            elif offset > expected:
                self._next_offset[tp] = offset + 1
            yield tp, message

    def _tracks(self, tp: TP) -> bool:
        # Transaction markers and compaction (changelogs) leave offsets empty by design.
        return not self.in_transaction and bool(self.app.topics.acks_enabled_for(tp.topic))

    async def _rewind(self, tp: TP, expected: int, offset: int) -> bool:
        """Take `tp` back to `expected`; False once that was tried `MAX_REWINDS` times."""
        last, tries = self._rewinds.get(tp, (expected, 0))
        tries = tries + 1 if last == expected else 1
        self._rewinds[tp] = (expected, tries)
        where = f"partition={tp.topic}[{tp.partition}] expected={expected} got={offset}"
        if tries > self.MAX_REWINDS:
            log.error(
                "records missing from the partition %s", f"{where} rewinds={tries - 1} action=hold-commit"
            )
            return False
        log.warning("reader skipped offsets %s", f"{where} action=re-read")
        await self._consumer_thread().seek_on_thread(tp, expected)
        return True

    def _new_offset(self, tp: TP) -> int | None:
        # Faust finds the offset to commit as the first run of consecutive acked offsets.
        # Its gap filling (offsets it skipped while reading) extends that list without
        # checking for offsets acked already, and a duplicate ends the run: the commit
        # then crawls one offset per commit interval while the worker idles (seen after
        # a broker restart: 343 records behind, 2.8 s per record). Offsets below the
        # committed one are done and only shorten the run the same way.
        acked = self._acked.get(tp)
        if acked and not self.in_transaction:
            committed = self._committed_offset.get(tp)
            base = committed if committed is not None else self._start_offset.get(tp)
            if base is None:
                # Acked before the seek that tells where this assignment starts: what
                # lies below those records is not known to be done.
                return None
            acked[:] = sorted({o for o in acked if o >= base})
            if acked and acked[0] != base:
                # Faust lets one missing offset at the head pass (a transaction marker
                # in exactly-once mode). Without transactions nothing occupies an offset
                # but a record, so a record that was never acked holds the commit.
                self._hold_for(tp, base)
                return None
            self._holes.pop(tp, None)
        return super()._new_offset(tp)

    def _hold_for(self, tp: TP, missing: int) -> None:
        """The commit of `tp` waits for `missing`: read it again if faust lost it.

        Faust drops records on several paths without acking them (an event of an older
        consumer generation reaching a stream, a send cancelled when flow stops) and
        relies on the next seek to committed to read them again. Until a rebalance
        brings one, the commit would wait. A record that stays missing for
        `HOLE_GRACE_S`, and is neither being processed nor queued for an agent, is read
        again from its offset (the ledger absorbs what is read twice).
        """
        now = self._clock()
        hole = self._holes.get(tp)
        if hole is None or hole[0] != missing:
            self._holes[tp] = (missing, now)
            return
        if now - hole[1] < self.HOLE_GRACE_S or tp in self._rereads or self._in_flight(tp, missing):
            return
        self._holes[tp] = (missing, now)
        task = asyncio.ensure_future(self._reread(tp, missing))
        self._rereads[tp] = task
        task.add_done_callback(lambda _: self._rereads.pop(tp, None))

    def _in_flight(self, tp: TP, offset: int) -> bool:
        if any(m.tp == tp and m.offset == offset and not m.acked for m in list(self._unacked_messages)):
            return True
        conductor: Any = self.app.topics
        for channel in list(conductor._topic_name_index.get(tp.topic, ())):
            # The agents' own queues (faust gives each actor a clone of the topic channel).
            for item in list(getattr(channel.queue, "_queue", ())):
                message = getattr(item, "message", None)
                if message is not None and message.tp == tp and message.offset == offset:
                    return True
        return False

    async def _reread(self, tp: TP, offset: int) -> None:
        log.warning(
            "commit waits for a record nobody holds %s",
            f"partition={tp.topic}[{tp.partition}] offset={offset} action=re-read",
        )
        try:
            await self.seek(tp, offset)
        except Exception as exc:  # a partition revoked meanwhile: its new owner reads it
            log.warning(
                "re-read failed %s", f"partition={tp.topic}[{tp.partition}] error={type(exc).__name__}"
            )

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust counts offsets its reader skipped as done, for the offsets transaction
        # markers and compaction leave empty. Our source and retry topics are neither
        # compacted nor, without transactions, marked: a skip there is records that
        # were never handed on, and a commit must not pass them. `getmany` normally
        # re-reads them first; if they are gone, they hold the commit (the watchdog
        # reports the partition).
        if self.in_transaction:
            await super()._add_gap(tp, offset_from, offset_to)
            return
        log.warning(
            "reader skipped offsets %s",
            f"partition={tp.topic}[{tp.partition}] from={offset_from} to={offset_to} counted_as_done=False",
        )


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class StreamsApp(faust.App):
    """A faust App whose consumer re-reads uncommitted stream partitions from the start."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
