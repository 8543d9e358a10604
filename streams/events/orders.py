"""orders.created -> send the order ID to the partner, once per order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams import EventContext, Handlers, RetryPolicy
from streams.events.partner_client import post

handlers = Handlers()


def order_key(event: Mapping[str, Any]) -> str:
    """order:<entity_id> (each order is sent once, whatever its events)"""
    return f"order:{event['entity_id']}"


@handlers.event(
    "orders.created",
    idempotency_key=order_key,
    retry=RetryPolicy(attempts=3, backoff_s=0.2, retry_topic_hops=3, retry_delays_s=(2.0, 10.0, 60.0)),
    side_effects=["POST $STREAMS_PARTNER_URL/orders"],
)
async def send_order_to_partner(event: dict[str, Any], ctx: EventContext) -> None:
    """POST the order ID to the partner's /orders with an Idempotency-Key."""
    await post(
        "/orders",
        {"entity_id": ctx.entity_id, "order_id": event["entity_id"], "event_id": ctx.event_id},
        ctx,
    )
