"""Waiting for created topics to reach the brokers' metadata (the admin client is a stand-in)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from streams.errors import UnreachableError
from streams.topics import _await_metadata


class _Metadata:
    """Answers metadata requests as a broker whose cache learns of new topics late."""

    def __init__(self, answers: list[dict[str, int]]) -> None:
        self.answers = answers
        self.requests = 0

    def list_topics(self, timeout: float) -> Any:
        counts = self.answers[min(self.requests, len(self.answers) - 1)]
        self.requests += 1
        topics = {
            name: SimpleNamespace(partitions=dict.fromkeys(range(n)), error=None)
            for name, n in counts.items()
        }
        return SimpleNamespace(topics=topics)


def test_waits_until_every_created_topic_shows_all_its_partitions() -> None:
    broker = _Metadata([{}, {"orders": 1}, {"orders": 3, "orders.retry": 3}])
    _await_metadata(broker, {"orders": 3, "orders.retry": 3}, timeout_s=10)  # type: ignore[arg-type]
    assert broker.requests == 3


def test_names_the_topics_that_never_showed_up() -> None:
    broker = _Metadata([{"orders": 3}])
    with pytest.raises(UnreachableError, match=r"not in Kafka's metadata after 0.2s: orders.retry;"):
        _await_metadata(broker, {"orders": 3, "orders.retry": 3}, timeout_s=0.2)  # type: ignore[arg-type]
