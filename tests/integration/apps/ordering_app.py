"""SKU versions with entity ordering: one in-process try, then the retry topic (5 s)."""

from __future__ import annotations

from streams import App, Handlers, RetryPolicy
from streams.events.catalog import sync_sku

handlers = Handlers()
handlers.event(
    "catalog.sku_changed",
    name="skus",
    ordering="entity",
    retry=RetryPolicy(attempts=1, retry_topic_hops=8, retry_delays_s=(5.0,)),
)(sync_sku)

app = App("ordering-test", handlers)
