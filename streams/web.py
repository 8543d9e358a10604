"""The worker's HTTP endpoints, on faust's web server (STREAMS_WEB_PORT).

/healthz (alive), /readyz (partitions assigned and tables recovered), /metrics
(Prometheus), /ledger/{handler}/{entity} (the ledger's entries for an entity),
/handlers (the handlers this worker runs), /outcomes (counts by handler and outcome).

With several workers an entity's ledger partition lives on one of them: /ledger asks
faust's router (the assignor's partition -> web URL map, as `app.table_route` does) and
proxies the request to the owner, so any worker answers for every entity.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable

from streams.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from streams.runtime import Runtime


_ROUTED = "X-Streams-Routed"


async def _route(runtime: Runtime, table: str, entity: str, web: Any, request: Any) -> Any:
    """Proxy to the worker owning `entity`'s partition of `table`; SameNode if that is us."""
    fapp = runtime.faust
    try:
        dest = fapp.router.key_store(table, entity)
    except KeyError:
        raise ServiceUnavailable() from None
    host, port = dest.host or "", int(dest.port or 80)
    own = fapp.conf.canonical_url
    if (host, port) == (own.host or "", int(own.port or 80)):
        raise SameNode()
    url = request.url.with_host(host).with_port(port)
    timeout = aiohttp.ClientTimeout(total=10)
    async with fapp.http_client.get(url, headers={_ROUTED: "1"}, timeout=timeout) as response:
        return web.text(await response.text(), content_type=response.content_type, status=response.status)


def add_views(runtime: Runtime) -> None:

    @runtime.faust.page("/ledger/{handler}/{entity}")
    async def ledger_view(web: Any, request: Any, handler: str, entity: str) -> Any:
        h = runtime.handlers.get(handler)
        if h is None:
            return web.json(
                {"error": f"no handler {handler}", "handlers": sorted(runtime.handlers)}, status=404
            )
        # A request proxied here by another worker is answered locally (no routing loop).
        if request.headers.get(_ROUTED) is None:
            try:
                return await _route(runtime, h.ledger.table.name, entity, web, request)
            except SameNode:
                pass
            except ServiceUnavailable:
                return web.json(
                    {"error": "partitions not assigned yet; retry when /readyz is 200"}, status=503
                )
        entries: dict[str, Any] = {k: vars(v) for k, v in h.ledger.entries(entity).items()}
        quarantine = h.ledger.quarantine_of(entity)
        if quarantine is not None:
            # "~" never starts an idempotency key: the entity's quarantine, if any.
            entries["~quarantine"] = {
                "blocker_event_id": quarantine.blocker_event_id,
                "blocker_key": quarantine.blocker_key,
                "since_ms": quarantine.since_ms,
                "parked": len(quarantine.parked),
                "parked_event_ids": [p.event_id for p in quarantine.parked],
            }
        return web.json(entries)

    @runtime.faust.page("/debug/tasks")
    async def tasks_view(web: Any, request: Any) -> Any:
        """Where every asyncio task of the worker waits: for a stall, without a debugger."""
        out = []
        for task in asyncio.all_tasks():
            frames = [
                f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno} {f.f_code.co_name}"
                for f in task.get_stack(limit=12)
            ]
            out.append({"task": task.get_name(), "coro": repr(task.get_coro())[:120], "stack": frames})
        return web.json(out)

    @runtime.faust.page("/debug/partitions")
    async def partitions_view(web: Any, request: Any) -> Any:
        """Where faust and aiokafka hold each assigned partition: offsets, acks, flow, pauses."""
        return web.json(runtime.watchdog.partitions())

    @runtime.faust.page("/handlers")
    async def handlers_view(web: Any, request: Any) -> Any:
        return web.json(
            [{"name": name, "topic": h.source_name} for name, h in sorted(runtime.handlers.items())]
        )

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
