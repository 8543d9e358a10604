"""A handler whose side effect hangs forever on its first attempt for `hang-*` entities."""

from __future__ import annotations

import asyncio
from typing import Any

from streams import App, EventContext, Handlers, RetryPolicy
from streams.events.partner_client import post

handlers = Handlers()


@handlers.event(
    "catalog.sku_changed",
    name="skus",
    deadline_s=6.0,
    retry=RetryPolicy(attempts=2, backoff_s=0.05, retry_topic_hops=1, retry_delays_s=(1.0,)),
)
async def sync_or_hang(event: dict[str, Any], ctx: EventContext) -> None:
    """Hangs (like a partner call without a timeout) on the first attempt of hang-* SKUs."""
    if ctx.entity_id.startswith("hang") and ctx.attempt == 1:
        await asyncio.Event().wait()
    await post("/skus", {"entity_id": ctx.entity_id, "catalog_version": event["catalog_version"]}, ctx)


app = App("hang-test", handlers)
