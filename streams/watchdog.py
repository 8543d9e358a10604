"""The stuck-partition watchdog: finds partitions that are assigned but not moving.

Two symptoms, checked every `interval`:
- a handler has been running on a partition longer than the threshold (a hung side
  effect): reported at once; the handler's deadline turns it into a transient failure,
  which is the heal - the record goes the retry path and the partition moves on;
- a partition's committed offset has not moved for the threshold while records wait
  behind it (its end offset is ahead) and no batch in flight holds its records: reported, then healed
  by seeking the consumer back to the committed offset (the beginning, if none; see
  `streams.faust_transport`) so fetching starts over. The heal logs where faust and
  aiokafka hold the partition (flow, pause, buffers, position) for the post-mortem.
Findings show on /readyz and as `streams_stuck_partitions`; heals are logged with
their result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.runtime import Runtime

log = logging.getLogger("streams.watchdog")


@dataclass
class Stuck:
    topic: str
    partition: int
    handler: str
    reason: str
    since: float

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}] handler {self.handler}: {self.reason}"


@dataclass
class _Progress:
    committed: int | None
    changed_at: float
    healed_at: float | None = None


class Watchdog:
    """Tracks running handlers and partition progress for one runtime."""

    def __init__(self, runtime: Runtime, threshold_s: float) -> None:
        self.rt = runtime
        self.threshold_s = threshold_s
        #: (topic, partition) -> (handler, started monotonic, event_id)
        self.running: dict[tuple[str, int], tuple[str, float, str]] = {}
        self.stuck: dict[tuple[str, int], Stuck] = {}
        self._progress: dict[tuple[str, int], _Progress] = {}

    def started(self, topic: str, partition: int, handler: str, event_id: str) -> None:
        self.running[(topic, partition)] = (handler, time.monotonic(), event_id)

    def finished(self, topic: str, partition: int) -> None:
        self.running.pop((topic, partition), None)

    def _handler_of(self, topic: str) -> str:
        for name, h in self.rt.handlers.items():
            if topic in (h.source_name, h.retry_name):
                return name
        return "-"

    def _busy(self, topic: str, partition: int) -> bool:
        return any((topic, partition) in h.partitions_in_flight for h in self.rt.handlers.values())

    async def check(self) -> None:
        now = time.monotonic()
        found: dict[tuple[str, int], Stuck] = {}
        for (topic, partition), (handler, started, event_id) in list(self.running.items()):
            if now - started > self.threshold_s:
                found[(topic, partition)] = Stuck(
                    topic,
                    partition,
                    handler,
                    f"handler running {now - started:.0f}s on event {event_id}",
                    started,
                )
        await self._check_offsets(now, found)
        for key, stuck in found.items():
            if key not in self.stuck:
                log.warning("stuck partition %s", stuck.describe())
            self.rt.metrics.stuck.labels(stuck.topic, str(stuck.partition), stuck.handler).set(1)
        for key, stuck in list(self.stuck.items()):
            if key not in found:
                log.info("partition moving again %s", f"{stuck.topic}[{stuck.partition}]")
                self.rt.metrics.stuck.labels(stuck.topic, str(stuck.partition), stuck.handler).set(0)
        self.stuck = found

    async def _check_offsets(self, now: float, found: dict[tuple[str, int], Stuck]) -> None:
        fapp = self.rt.faust
        try:
            assigned = fapp.consumer.assignment()
        except Exception:
            return
        watched = {n for h in self.rt.handlers.values() for n in (h.source_name, h.retry_name)}
        consumer: Any = fapp.consumer
        for tp in assigned:
            if tp.topic not in watched:
                continue
            key = (tp.topic, tp.partition)
            committed = consumer._committed_offset.get(tp)
            progress = self._progress.get(key)
            if progress is None or progress.committed != committed or self._busy(tp.topic, tp.partition):
                # A batch in flight with records of this partition (handlers backing off
                # between attempts, say): waiting, not stuck. A heal would only re-read.
                self._progress[key] = _Progress(committed, now)
                continue
            highwater = consumer.highwater(tp)
            waiting = highwater is not None and highwater > (committed or 0)
            if not waiting or key in self.running or now - progress.changed_at < self.threshold_s:
                continue
            handler = self._handler_of(tp.topic)
            found[key] = Stuck(
                tp.topic,
                tp.partition,
                handler,
                f"committed offset {committed} frozen {now - progress.changed_at:.0f}s, "
                f"end offset {highwater}",
                progress.changed_at,
            )
            if progress.healed_at is None or now - progress.healed_at > self.threshold_s:
                progress.healed_at = now
                await self._heal(tp, committed, handler)

    def diagnose(self, tp: Any) -> dict[str, Any]:
        """Where in faust/aiokafka a partition's records stop: for the heal log."""
        fapp: Any = self.rt.faust
        consumer: Any = fapp.consumer
        facts: dict[str, Any] = {}
        try:
            facts["flow_control_active"] = fapp.flow_control.is_active()
            facts["consumer_flow_active"] = consumer.flow_active
            active = consumer._active_partitions
            facts["active"] = None if active is None else tp in active
            facts["paused"] = tp in consumer._paused_partitions
            facts["buffered"] = tp in consumer._buffered_partitions
            facts["read_offset"] = consumer._read_offset.get(tp)
            facts["committed"] = consumer._committed_offset.get(tp)
            acked = consumer._acked.get(tp) or []
            facts["acked"] = (len(acked), min(acked), max(acked)) if acked else (0, None, None)
            facts["gaps"] = len(consumer._gap.get(tp) or ())
            facts["highwater"] = consumer.highwater(tp)
            facts["running"] = self.running.get((tp.topic, tp.partition))
            aio = consumer._thread._consumer
            state = aio._subscription.subscription.assignment.state_value(tp)
            facts["aio_paused"] = getattr(state, "paused", None)
            facts["aio_valid_position"] = getattr(state, "has_valid_position", None)
            facts["aio_position"] = getattr(state, "_position", None)
            facts["aio_awaiting_reset"] = getattr(state, "awaiting_reset", None)
            facts["aio_buffered_records"] = tp in aio._fetcher._records
            for agent in fapp.agents.values():
                queue = agent.channel.queue
                facts[f"queue[{agent.name.rsplit('.', 1)[-1]}]"] = (
                    queue.qsize(),
                    len(queue._pending_pressure_drop_callbacks),
                )
        except Exception as exc:  # diagnostics must never take the worker down
            facts["error"] = f"{type(exc).__name__}: {exc}"
        return facts

    def partitions(self) -> dict[str, dict[str, Any]]:
        """`diagnose` for every assigned source and retry partition (for /debug/partitions)."""
        watched = {n for h in self.rt.handlers.values() for n in (h.source_name, h.retry_name)}
        try:
            assigned = self.rt.faust.consumer.assignment()
        except Exception:
            return {}
        return {
            f"{tp.topic}[{tp.partition}]": self.diagnose(tp) for tp in sorted(assigned) if tp.topic in watched
        }

    async def _heal(self, tp: Any, committed: int | None, handler: str) -> None:
        consumer: Any = self.rt.faust.consumer
        log.warning("watchdog diagnosis %s", f"partition={tp.topic}[{tp.partition}] {self.diagnose(tp)}")
        action = "seek-to-committed"
        try:
            # The broker's committed offsets, not this process's view (which is None until
            # it commits itself): fetching restarts there; the ledger absorbs re-reads.
            # perform_seek also moves faust's read offsets back, or faust would drop the
            # re-read records as already seen.
            await consumer.perform_seek()
            result = "done"
        except Exception as exc:  # the heal must never take the worker down
            result = f"failed: {type(exc).__name__}"
        log.warning(
            "watchdog heal %s", f"partition={tp.topic}[{tp.partition}] action={action} result={result}"
        )
        self.rt.metrics.watchdog_heals.labels(handler, action, result.split(":")[0]).inc()

    def describe(self) -> list[str]:
        return [s.describe() for s in self.stuck.values()]
