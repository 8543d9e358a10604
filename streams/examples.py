"""The example app `streams worker` runs by default: orders, catalog and imports."""

from __future__ import annotations

from streams import App
from streams.events import catalog, orders
from streams.workers import imports

app = App("streams-examples", orders.handlers, catalog.handlers, imports.handlers)
