"""An exactly-once app: each order handler's only effect is a Kafka write (`ctx.emit`)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from streams import App, EventContext, Handlers
from streams.outcomes import now_ms

handlers = Handlers()


@handlers.event("orders.created", name="notify", publishes=["notifications.requested"], concurrency=1)
async def notify(event: dict[str, Any], ctx: EventContext) -> None:
    """Ask for an order-received notification (5 ms each, so a kill lands mid-stream)."""
    await asyncio.sleep(0.005)
    ctx.emit(
        "notifications.requested",
        {
            "event_id": str(uuid.uuid4()),
            "entity_id": ctx.entity_id,
            "event_type": "notifications.requested",
            "occurred_at": now_ms(),
            "source": "eos-test",
            "workspace": ctx.workspace,
            "caused_by": ctx.event_id,
            "recipient_id": str(event["customer_id"]),
            "template": "order-received",
            "channel": "EMAIL",
        },
    )


app = App("eos-test", handlers, guarantee="exactly_once")
