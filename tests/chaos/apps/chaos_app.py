"""The app the chaos scenarios run: the example order handler with a patient retry policy.

The retry budget (3 quick in-process attempts, then 6 retry-topic hops 2 s .. 30 s apart,
about 90 s in all) outlasts the one-minute partner outage of the full scenario, so an
outage delays events but dead-letters none of them; the runtime tests' FAST policy would
dead-letter within seconds.
"""

from __future__ import annotations

from streams import App, Handlers, RetryPolicy
from streams.events.orders import order_key, send_order_to_partner

PATIENT = RetryPolicy(
    attempts=3,
    backoff_s=0.1,
    max_backoff_s=0.5,
    retry_topic_hops=6,
    retry_delays_s=(2.0, 4.0, 8.0, 16.0, 30.0, 30.0),
)

handlers = Handlers()
handlers.event("orders.created", name="orders", idempotency_key=order_key, retry=PATIENT)(
    send_order_to_partner
)

app = App("chaos", handlers)
