"""The app the secure-stack tests run: no partner API, failures that quote sensitive fields.

An order succeeds unless its total says otherwise: 13 cents fails permanently and 7 cents
transiently every time (its retries run out), both with the customer's email in the
error message; an import fails permanently quoting its pre-signed `file_url`. So a run
produces successes, retries, retry-topic hops and dead letters whose error text the
runtime must redact before it reaches a status event or a DLQ header.
"""

from __future__ import annotations

from typing import Any

from streams import App, EventContext, Handlers, PermanentError, RetryPolicy, TransientError

FAST = RetryPolicy(attempts=2, backoff_s=0.05, max_backoff_s=0.1, retry_topic_hops=1, retry_delays_s=(0.5,))

handlers = Handlers()


@handlers.event("orders.created", name="orders", retry=FAST, deadline_s=10.0)
async def take_order(event: dict[str, Any], ctx: EventContext) -> None:
    if event["total_cents"] == 13:
        raise PermanentError(f"partner refused the order of {event['customer_email']}")
    if event["total_cents"] == 7:
        raise TransientError(f"partner busy, cannot confirm to {event['customer_email']}")


@handlers.event("imports.requested", name="imports", retry=FAST, deadline_s=10.0)
async def run_import(event: dict[str, Any], ctx: EventContext) -> None:
    raise PermanentError(f"cannot fetch {event['file_url']}: 403")


app = App("secure-test", handlers)
