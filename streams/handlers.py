"""Declaring handlers: each names its topic, schema, idempotency key, retry policy, batching.

    handlers = Handlers()

    @handlers.event("orders.created", idempotency_key="event_id")
    async def send_order(event: dict, ctx: EventContext) -> None: ...

    @handlers.batch("imports.requested", max_records=50, max_wait_s=1.0)
    async def import_items(events: list[dict], ctxs: list[EventContext]) -> list[ItemResult]: ...

An `App` (streams.app) collects `Handlers` and runs them; `streams handlers` lists them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from streams.context import EventContext
from streams.retry import RetryPolicy

Event = dict[str, Any]
EventHandler = Callable[[Event, EventContext], Awaitable[None]]
IdempotencyKey = str | Callable[[Mapping[str, Any]], str]

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,80}$")


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one item of a batch: `ok`, or the error it failed with."""

    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def success(cls) -> ItemResult:
        return cls()

    @classmethod
    def failure(cls, error: BaseException) -> ItemResult:
        return cls(error)


BatchHandler = Callable[[list[Event], list[EventContext]], Awaitable[Sequence[ItemResult]]]


@dataclass(frozen=True)
class BatchSpec:
    """A worker takes up to `max_records` records, or what arrived within `max_wait_s`."""

    max_records: int = 100
    max_wait_s: float = 1.0


@dataclass(frozen=True)
class HandlerSpec:
    """One declared handler (or batch worker) and everything the runtime needs to run it."""

    name: str
    topic: str
    func: EventHandler | BatchHandler
    schema: str | None = None
    idempotency_key: IdempotencyKey = "event_id"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch: BatchSpec | None = None
    deadline_s: float = 60.0
    side_effects: tuple[str, ...] = ()
    publishes: tuple[str, ...] = ()
    description: str = ""
    kind: Literal["event", "batch"] = "event"
    #: "entity": when an event of entity X goes to the retry topic or the DLQ, later events
    #: of X are parked until it succeeds (per-entity order kept); "none": no such hold.
    ordering: Literal["entity", "none"] = "entity"
    #: How many entities of one batch may be in their handler at once (events of one
    #: entity always run one after the other, in offset order).
    concurrency: int = 32

    def key_for(self, event: Mapping[str, Any]) -> str:
        """The idempotency key of `event` for this handler."""
        if callable(self.idempotency_key):
            return str(self.idempotency_key(event))
        return str(event[self.idempotency_key])

    @property
    def idempotency_key_doc(self) -> str:
        if callable(self.idempotency_key):
            doc = getattr(self.idempotency_key, "__doc__", None)
            return str(doc or getattr(self.idempotency_key, "__name__", "custom")).strip()
        return self.idempotency_key


class Handlers:
    """A collection of handler declarations, like a router; `App` includes several."""

    def __init__(self) -> None:
        self.specs: list[HandlerSpec] = []

    def _add(self, spec: HandlerSpec) -> None:
        if not _NAME.match(spec.name):
            raise ValueError(f"handler name {spec.name!r}: use lowercase letters, digits, '_', '-', '.'")
        if any(s.name == spec.name for s in self.specs):
            raise ValueError(f"handler {spec.name!r} is declared twice")
        self.specs.append(spec)

    def event(
        self,
        topic: str,
        *,
        name: str | None = None,
        schema: str | None = None,
        idempotency_key: IdempotencyKey = "event_id",
        retry: RetryPolicy | None = None,
        deadline_s: float = 60.0,
        side_effects: Sequence[str] = (),
        publishes: Sequence[str] = (),
        ordering: Literal["entity", "none"] = "entity",
        concurrency: int = 32,
    ) -> Callable[[EventHandler], EventHandler]:
        """Declare `func(event, ctx)` as the handler of `topic`'s events."""

        def register(func: EventHandler) -> EventHandler:
            self._add(
                HandlerSpec(
                    name=name or func.__name__,
                    topic=topic,
                    func=func,
                    schema=schema,
                    idempotency_key=idempotency_key,
                    retry=retry or RetryPolicy(),
                    deadline_s=deadline_s,
                    side_effects=tuple(side_effects),
                    publishes=tuple(publishes),
                    description=(func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "",
                    kind="event",
                    ordering=ordering,
                    concurrency=concurrency,
                )
            )
            return func

        return register

    def batch(
        self,
        topic: str,
        *,
        name: str | None = None,
        schema: str | None = None,
        max_records: int = 100,
        max_wait_s: float = 1.0,
        idempotency_key: IdempotencyKey = "event_id",
        retry: RetryPolicy | None = None,
        deadline_s: float = 60.0,
        side_effects: Sequence[str] = (),
    ) -> Callable[[BatchHandler], BatchHandler]:
        """Declare `func(events, ctxs) -> [ItemResult, ...]` as a batch worker of `topic`."""

        def register(func: BatchHandler) -> BatchHandler:
            self._add(
                HandlerSpec(
                    name=name or func.__name__,
                    topic=topic,
                    func=func,
                    schema=schema,
                    idempotency_key=idempotency_key,
                    retry=retry or RetryPolicy(),
                    batch=BatchSpec(max_records, max_wait_s),
                    deadline_s=deadline_s,
                    side_effects=tuple(side_effects),
                    description=(func.__doc__ or "").strip().splitlines()[0] if func.__doc__ else "",
                    kind="batch",
                    ordering="none",
                )
            )
            return func

        return register
