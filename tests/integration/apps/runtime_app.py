"""The app the runtime tests run: the example handlers with retry delays short enough to test."""

from __future__ import annotations

from streams import App, Handlers, RetryPolicy
from streams.events.catalog import sync_sku
from streams.events.orders import order_key, send_order_to_partner
from streams.workers.imports import run_imports

FAST = RetryPolicy(
    attempts=3, backoff_s=0.05, max_backoff_s=0.2, retry_topic_hops=2, retry_delays_s=(1.0, 1.0)
)

handlers = Handlers()
handlers.event("orders.created", name="orders", idempotency_key=order_key, retry=FAST)(send_order_to_partner)
handlers.event("catalog.sku_changed", name="skus", retry=FAST)(sync_sku)
handlers.batch("imports.requested", name="imports", max_records=10, max_wait_s=1.0, retry=FAST)(run_imports)

app = App("runtime-test", handlers)
