"""The commit bookkeeping streams' faust consumer corrects (no broker needed: no I/O)."""

from __future__ import annotations

import asyncio

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.faust_transport import StreamsApp

TOPIC = TP("orders", 0)


def _consumer(tmp: str) -> FaustConsumer:
    app = StreamsApp("faust-transport-test", broker="kafka://127.0.0.1:1", datadir=tmp, web_enabled=False)
    consumer = app.consumer
    assert isinstance(consumer, FaustConsumer)
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
