"""The worker's HTTP endpoints, on faust's web server (STREAMS_WEB_PORT).

/healthz (alive), /readyz (partitions assigned and tables recovered), /metrics
(Prometheus), /ledger/{handler}/{entity} (the ledger's entries for an entity),
/outcomes (counts by handler and outcome).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from streams.runtime import Runtime


def add_views(runtime: Runtime) -> None:

    @runtime.faust.page("/ledger/{handler}/{entity}")
    async def ledger_view(web: Any, request: Any, handler: str, entity: str) -> Any:
        h = runtime.handlers.get(handler)
        if h is None:
            return web.json({"error": f"no handler {handler}"}, status=404)
        entries = h.ledger.entries(entity)
        return web.json({k: vars(v) for k, v in entries.items()})

    @runtime.faust.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        runtime.refresh_gauges()
        return web.bytes(runtime.metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @runtime.faust.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True})

    @runtime.faust.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready, why = runtime.readiness()
        return web.json({"ready": ready, "reason": why}, status=200 if ready else 503)

    @runtime.faust.page("/outcomes")
    async def outcomes_view(web: Any, request: Any) -> Any:
        return web.json([{"handler": h, "outcome": o, "count": n} for (h, o), n in runtime.outcomes.items()])
