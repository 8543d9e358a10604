"""The runtime's per-entity scheduling of a batch: at most `concurrency` entities at once,
each entity's events in order, every event once, and a slow entity never holding up the
others (the scheduling is pure logic: `_run_one` is replaced by a recorder)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.runtime import HandlerRuntime


def _runtime(concurrency: int, run_one: Any) -> HandlerRuntime:
    rt = object.__new__(HandlerRuntime)
    rt.spec = SimpleNamespace(concurrency=concurrency)  # type: ignore[assignment]
    rt._run_one = run_one  # type: ignore[method-assign]
    return rt


def _deliveries(entities: int, per_entity: int) -> list[Any]:
    # Interleaved as a batch arrives: e1#0, e2#0, ..., e1#1, ...
    return [SimpleNamespace(entity_id=f"e{e}", n=n) for n in range(per_entity) for e in range(entities)]


def test_entities_run_concurrently_up_to_the_limit_each_in_order() -> None:
    active: set[str] = set()
    most = 0
    seen: dict[str, list[int]] = {}

    async def run_one(d: Any, pending: list[Any]) -> None:
        nonlocal most
        assert d.entity_id not in active, "two events of one entity ran at once"
        active.add(d.entity_id)
        most = max(most, len(active))
        for _ in range(3):
            await asyncio.sleep(0)
        seen.setdefault(d.entity_id, []).append(d.n)
        active.discard(d.entity_id)

    rt = _runtime(3, run_one)
    asyncio.run(rt._run_by_entity(_deliveries(10, 4), []))
    assert most == 3
    assert seen == {f"e{e}": [0, 1, 2, 3] for e in range(10)}


def test_a_blocked_entity_does_not_hold_up_the_others() -> None:
    order: list[str] = []

    async def main() -> None:
        released = asyncio.Event()
        remaining = {f"e{e}" for e in range(1, 6)}

        async def run_one(d: Any, pending: list[Any]) -> None:
            if d.entity_id == "e0":
                await released.wait()  # a slow side effect
            order.append(f"{d.entity_id}#{d.n}")
            if d.entity_id != "e0" and d.n == 1:
                remaining.discard(d.entity_id)
                if not remaining:
                    released.set()

        await asyncio.wait_for(_runtime(2, run_one)._run_by_entity(_deliveries(6, 2), []), 5)

    asyncio.run(main())
    assert order[-2:] == ["e0#0", "e0#1"]
    assert sorted(order) == sorted(f"e{e}#{n}" for e in range(6) for n in range(2))
