"""The commit bookkeeping streams' faust consumer corrects (no broker needed: no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.faust_transport import StreamsApp, _Consumer

TOPIC = TP("orders", 0)


def _consumer(tmp: str) -> _Consumer:
    app = StreamsApp("faust-transport-test", broker="kafka://127.0.0.1:1", datadir=tmp, web_enabled=False)
    consumer = app.consumer
    assert isinstance(consumer, _Consumer)
    return consumer


def test_duplicate_and_stale_acks_do_not_shorten_the_commit(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    # As faust's gap filling leaves them: duplicates, and an offset below the commit.
    consumer._committed_offset[TOPIC] = 255
    consumer._acked[TOPIC] = [254, 255, 255, 256, 256, 257, 257, 258]
    assert consumer._new_offset(TOPIC) == 259
    assert consumer._acked[TOPIC] == []


def test_faust_alone_crawls_on_the_same_acks(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer._committed_offset[TOPIC] = 255
    consumer._acked[TOPIC] = [254, 255, 255, 256, 256, 257, 257, 258]
    assert FaustConsumer._new_offset(consumer, TOPIC) == 256, "why streams overrides _new_offset"


def test_a_gap_at_the_head_still_holds_the_commit(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer._committed_offset[TOPIC] = 100
    consumer._acked[TOPIC] = [103, 104, 104]
    assert consumer._new_offset(TOPIC) is None


def test_without_transactions_one_missing_offset_at_the_head_holds_the_commit(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer._committed_offset[TOPIC] = 100
    consumer._acked[TOPIC] = [101, 102]
    assert consumer._new_offset(TOPIC) is None, "offset 100 was never acked"
    assert FaustConsumer._new_offset(consumer, TOPIC) == 103, "faust alone lets it pass"


def test_skipped_offsets_are_not_counted_as_done(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer._committed_offset[TOPIC] = 570
    asyncio.run(consumer._add_gap(TOPIC, 570, 594))
    consumer._acked[TOPIC] = [595, 596]
    assert not consumer._gap[TOPIC]
    assert consumer._new_offset(TOPIC) is None


def test_a_commit_waits_until_the_start_of_the_assignment_is_known(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer._acked[TOPIC] = [300, 301]
    assert consumer._new_offset(TOPIC) is None, "acked before the seek: what lies below is unknown"
    consumer._start_offset[TOPIC] = 0  # faust keeps no committed offset for a start of 0
    consumer._acked[TOPIC] = [1, 2]
    assert consumer._new_offset(TOPIC) is None, "offset 0 was never acked"
    consumer._acked[TOPIC] = [0, 1, 2]
    assert consumer._new_offset(TOPIC) == 3


class _Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def _batches(
    consumer: _Consumer, batches: list[list[tuple[TP, int]]]
) -> tuple[list[list[int]], list[tuple[TP, int]]]:
    """Run `getmany` over fetched `batches`; returns what it handed on and where it sought."""
    fetched = iter(batches)
    sought: list[tuple[TP, int]] = []

    async def fetch(self: object, timeout: float) -> AsyncIterator[tuple[TP, _Record]]:
        for tp, offset in next(fetched):
            yield tp, _Record(offset)

    async def seek_on_thread(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    async def run() -> list[list[int]]:
        handed: list[list[int]] = []
        for _ in batches:
            handed.append([m.offset async for _, m in consumer.getmany(1.0)])
        return handed

    consumer._thread.seek_on_thread = seek_on_thread  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faust_aiokafka.Consumer, "getmany", fetch)
        return asyncio.run(run()), sought


def test_records_fetched_past_a_skip_are_held_back_and_the_skip_is_read_again(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer.app.topics.acking_topics.add(TOPIC.topic)
    other = TP("changelog", 0)  # acks off (a table's changelog): gaps there are compaction
    consumer._next_offset[TOPIC] = 229  # as the seek to the committed offset left it
    consumer._next_offset[other] = 10
    handed, sought = _batches(
        consumer,
        [
            [(TOPIC, 235), (other, 12), (TOPIC, 236)],  # fetched before the seek, handed on after it
            [(TOPIC, 229), (TOPIC, 230)],
        ],
    )
    assert handed == [[12], [229, 230]]
    assert sought == [(TOPIC, 229)]
    assert consumer._next_offset[TOPIC] == 231


def test_records_that_stay_missing_are_passed_on_and_hold_the_commit(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer.app.topics.acking_topics.add(TOPIC.topic)
    consumer._next_offset[TOPIC] = 40  # deleted by retention, say: every re-read starts at 50
    tries = consumer.MAX_REWINDS + 1
    handed, sought = _batches(consumer, [[(TOPIC, 50)]] * tries)
    assert handed == [[]] * consumer.MAX_REWINDS + [[50]]
    assert sought == [(TOPIC, 40)] * consumer.MAX_REWINDS
    consumer._committed_offset[TOPIC] = 40
    consumer._acked[TOPIC] = [50]
    assert consumer._new_offset(TOPIC) is None


def test_a_record_finishing_after_a_seek_does_not_move_the_read_offset_past_it(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    consumer.app.topics.acking_topics.add(TOPIC.topic)
    consumer._next_offset[TOPIC] = 331
    handed, _ = _batches(consumer, [[(TOPIC, 331)]])
    assert handed == [[331]]
    # The watchdog's heal seeks back while faust's reader is still handing 331 to its agent;
    # then the reader writes 331 as read, and without the guard drops 281..330 as seen.
    consumer.record_seek({TOPIC: 281})
    consumer._read_offset[TOPIC] = 331
    assert consumer._read_offset[TOPIC] == 281
    handed, _ = _batches(consumer, [[(TOPIC, 281)]])
    consumer._read_offset[TOPIC] = 281
    assert (handed, consumer._read_offset[TOPIC]) == ([[281]], 281)


class _Tracked:
    def __init__(self, tp: TP, offset: int) -> None:
        self.tp, self.offset, self.acked = tp, offset, False


def test_a_record_the_commit_waits_for_is_read_again_once_nobody_holds_it(tmp_path: object) -> None:
    consumer = _consumer(str(tmp_path))
    now = [1000.0]
    consumer._clock = lambda: now[0]
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer.seek = seek  # type: ignore[method-assign,assignment]
    consumer._committed_offset[TOPIC] = 409
    in_flight = _Tracked(TOPIC, 409)
    consumer._unacked_messages.add(in_flight)  # type: ignore[arg-type]

    async def commits() -> None:
        for step in (0.0, consumer.HOLE_GRACE_S, 1.0):
            now[0] += step
            consumer._acked[TOPIC] = [410, 411]
            assert consumer._new_offset(TOPIC) is None
            await asyncio.sleep(0)
        assert sought == [], "409 is still being processed: waiting is right"
        in_flight.acked = True  # lost instead: acked nowhere, queued nowhere
        consumer._unacked_messages.discard(in_flight)  # type: ignore[arg-type]
        consumer._new_offset(TOPIC)
        await asyncio.sleep(0)
        assert sought == [(TOPIC, 409)]
        consumer._new_offset(TOPIC)
        await asyncio.sleep(0)
        assert sought == [(TOPIC, 409)], "one re-read per grace period"
        now[0] += consumer.HOLE_GRACE_S
        consumer._acked[TOPIC] = [409, 410, 411]
        assert consumer._new_offset(TOPIC) == 412
        assert TOPIC not in consumer._holes

    asyncio.run(commits())
