"""Prometheus metrics of a worker, served at /metrics on its web port.

Names follow Prometheus conventions (`streams_` prefix, `_total` counters, seconds).
Labels carry handler names, outcomes, topics and partitions only: never IDs or payloads.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    """One worker's metrics, in a registry of its own (tests may build several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "streams_events_total", "Deliveries by handler and outcome.", ["handler", "outcome"], registry=r
        )
        self.duration = Histogram(
            "streams_handler_duration_seconds",
            "Handler attempt duration.",
            ["handler"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.retries = Counter(
            "streams_retries_total", "Records moved to a retry topic.", ["handler"], registry=r
        )
        self.dead_letters = Counter(
            "streams_dead_letters_total",
            "Records dead-lettered, by reason.",
            ["handler", "reason"],
            registry=r,
        )
        self.decode_errors = Counter(
            "streams_decode_errors_total",
            "Records that could not be decoded.",
            ["handler", "error"],
            registry=r,
        )
        self.ledger_writes = Counter(
            "streams_ledger_writes_total",
            "Ledger entries written, by state.",
            ["handler", "state"],
            registry=r,
        )
        self.ledger_entities = Gauge(
            "streams_ledger_entities", "Entities in the local ledger (estimate).", ["handler"], registry=r
        )
        self.in_flight = Gauge(
            "streams_in_flight_events", "Records taken but not yet acknowledged.", ["handler"], registry=r
        )
        self.lag = Gauge(
            "streams_consumer_lag",
            "Records behind the partition's end offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.parked = Gauge(
            "streams_parked_events",
            "Events parked behind a failed event of their entity.",
            ["handler"],
            registry=r,
        )
        self.stuck = Gauge(
            "streams_stuck_partitions",
            "1 while the watchdog finds the partition stuck.",
            ["topic", "partition", "handler"],
            registry=r,
        )
        self.watchdog_heals = Counter(
            "streams_watchdog_heals_total",
            "Stuck partitions the watchdog acted on.",
            ["handler", "action", "result"],
            registry=r,
        )
        self.registry_waits = Counter(
            "streams_registry_unavailable_total",
            "Decodes held back because the schema registry was unreachable.",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
