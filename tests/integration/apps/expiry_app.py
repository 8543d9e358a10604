"""SKU sync with a 2-second ledger retention, to watch entries expire."""

from __future__ import annotations

from streams import App, Handlers
from streams.events.catalog import sync_sku

handlers = Handlers()
handlers.event("catalog.sku_changed", name="skus")(sync_sku)

app = App("expiry-test", handlers, retention_s=2.0)
