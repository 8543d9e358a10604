"""catalog.sku_changed -> sync the SKU to the partner."""

from __future__ import annotations

from typing import Any

from streams import EventContext, Handlers
from streams.events.partner_client import post

handlers = Handlers()


@handlers.event("catalog.sku_changed", side_effects=["POST $STREAMS_PARTNER_URL/skus"])
async def sync_sku(event: dict[str, Any], ctx: EventContext) -> None:
    """POST the changed SKU's ID and change kind to the partner's /skus."""
    await post(
        "/skus",
        {
            "entity_id": ctx.entity_id,
            "change": event["change"],
            "catalog_version": event["catalog_version"],
            "event_id": ctx.event_id,
        },
        ctx,
    )
