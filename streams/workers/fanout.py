"""A fan-out publisher: one catalog release becomes one small event per changed SKU."""

from __future__ import annotations

from collections.abc import Iterable

from streams.publish import Publisher


def publish_release(publisher: Publisher, catalog_version: int, skus: Iterable[str]) -> int:
    """Publish `catalog.sku_changed` for every SKU (IDs only); returns how many."""
    count = 0
    for sku in skus:
        event = publisher.envelope(
            "catalog.sku_changed",
            sku,
            {
                "change": "UPDATED",
                "catalog_version": catalog_version,
                "changed_fields": ["price"],
            },
        )
        publisher.publish("catalog.sku_changed", event)
        count += 1
    publisher.flush()
    return count
