"""The faust transport streams runs on: faust's aiokafka driver, with its offset bookkeeping fixed.

Faust drops records it has fetched but cannot hand on (a rebalance begins, flow stops,
the partition is paused for recovery, a fetch straddles a seek) and relies on "seek to
committed" and its commit bookkeeping to get them read again. Three places let them go
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

Also: the broker may hold an empty fetch 50 ms, not faust's 1.5 s, which stalled records
of the other partitions under steady load (see bench/PROFILE.md).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger("streams.faust_transport")


async def rewind_to_committed(
    consumer: aiokafka.AIOKafkaConsumer, keep_topics: Collection[str] = ()
) -> Mapping[TP, int]:
    """Seek every assigned partition to its committed offset, or to its beginning if it has none.

    Partitions of `keep_topics` without a commit keep their position. Returns the
    committed offsets (None where there is no commit), as `seek_to_committed` does.
    """
    committed: Mapping[TP, int] = await consumer.seek_to_committed()
    uncommitted = [tp for tp, offset in committed.items() if not offset and tp.topic not in keep_topics]
    if uncommitted:
        # Explicit offsets, not `seek_to_beginning`: that leaves the position unset until
        # the reset answers, and faust's livelock check asserts on an unset position.
        starts = await consumer.beginning_offsets(uncommitted)
        for tp, start in starts.items():
            consumer.seek(tp, start)
    return committed


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


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        # Faust finds the offset to commit as the first run of consecutive acked offsets.
        # Its gap filling (offsets it skipped while reading) extends that list without
        # checking for offsets acked already, and a duplicate ends the run: the commit
        # then crawls one offset per commit interval while the worker idles (seen after
        # a broker restart: 343 records behind, 2.8 s per record). Offsets below the
        # committed one are done and only shorten the run the same way.
        acked = self._acked.get(tp)
        if acked:
            committed = self._committed_offset.get(tp)
            acked[:] = sorted({o for o in acked if committed is None or o >= committed})
            if acked and committed is not None and acked[0] != committed and not self.in_transaction:
                # Faust lets one missing offset at the head pass (a transaction marker
                # in exactly-once mode). Without transactions nothing occupies an offset
                # but a record, so a record that was never acked holds the commit.
                return None
        return super()._new_offset(tp)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust counts offsets its reader skipped as done, for the offsets transaction
        # markers and compaction leave empty. Our source and retry topics are neither
        # compacted nor, without transactions, marked: a skip there is records faust
        # dropped (a fetch that straddled a seek) and a commit must not pass them. They
        # hold the commit instead, and the watchdog's heal (a seek back to the committed
        # offset) reads them again.
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
