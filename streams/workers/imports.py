"""imports.requested -> a batch worker: each import is an item with its own status."""

from __future__ import annotations

import asyncio
from typing import Any

from streams import EventContext, Handlers, ItemResult
from streams.events.partner_client import post

handlers = Handlers()


@handlers.batch(
    "imports.requested",
    max_records=50,
    max_wait_s=0.5,
    side_effects=["POST $STREAMS_PARTNER_URL/imports/items"],
)
async def run_imports(events: list[dict[str, Any]], ctxs: list[EventContext]) -> list[ItemResult]:
    """Hand each requested import to the partner; one result per import."""

    async def one(event: dict[str, Any], ctx: EventContext) -> ItemResult:
        try:
            await post("/imports/items", {"entity_id": ctx.entity_id, "format": event["format"]}, ctx)
        except Exception as exc:
            return ItemResult.failure(exc)
        return ItemResult.success()

    return list(await asyncio.gather(*(one(e, c) for e, c in zip(events, ctxs, strict=True))))
