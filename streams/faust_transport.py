"""The faust transport streams runs on: faust's aiokafka driver with one correction.

Faust drops records it has fetched but cannot hand on (a rebalance begins, flow stops,
the partition is paused for recovery) and relies on "seek to committed" afterwards to
fetch them again. aiokafka's `seek_to_committed` skips every partition whose committed
offset is missing or 0, so on a partition nobody has committed yet the consumer keeps
the advanced position and the dropped records are never seen again by this group: a
silent loss (faust-streaming/faust#629 shows the same symptom). Here a stream partition
without a commit goes back to its beginning instead, as `auto_offset_reset=earliest`
promises; the ledger absorbs the re-reads. Changelog partitions keep faust's own
positions: recovery tracks those itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


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
        await consumer.seek_to_beginning(*uncommitted)
    return committed


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        result: Mapping[TP, int] = await self.call_thread(self._seek_to_committed_or_beginning)
        return result

    async def _seek_to_committed_or_beginning(self) -> Mapping[TP, int]:
        return await rewind_to_committed(self._ensure_consumer(), self.app.tables.changelog_topics)


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class StreamsApp(faust.App):
    """A faust App whose consumer re-reads uncommitted stream partitions from the start."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
