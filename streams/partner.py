"""A small recording partner API, for the demo and the tests: it is the "other system".

    python -m streams.partner --port 8900

Accepts POST /orders, /skus and /imports/items (JSON with an `entity_id`), keeps every
call with its `Idempotency-Key` header, and can be told to fail: POST /_control with
{"fail": {"<entity_id>": <times>}, "mode": "500"|"timeout", "reject": ["<entity_id>"],
"reject_next": {"<entity_id>": <times>}}.
GET /_calls lists the calls; GET /_completed counts 2xx answers per idempotency key.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web


class Partner:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_left: dict[str, int] = defaultdict(int)
        self.reject: set[str] = set()
        self.reject_next: dict[str, int] = defaultdict(int)
        self.mode = "500"
        self.delay_s = delay_s
        self.completed: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        entity = str(body.get("entity_id", ""))
        key = request.headers.get("Idempotency-Key", "")
        call = {
            "path": request.path,
            "entity_id": entity,
            "key": key,
            "at": time.time(),
            "body": body,
            "version": body.get("catalog_version"),
            "event_id": body.get("event_id"),
        }
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if entity in self.reject or self.reject_next.get(entity, 0) > 0:
            if self.reject_next.get(entity, 0) > 0:
                self.reject_next[entity] -= 1
            call["status"] = 400
            self.calls.append(call)
            return web.json_response({"error": "rejected"}, status=400)
        if self.fail_left.get(entity, 0) > 0:
            self.fail_left[entity] -= 1
            if self.mode == "timeout":
                call["status"] = "timeout"
                self.calls.append(call)
                await asyncio.sleep(30)
            call["status"] = 503
            self.calls.append(call)
            return web.json_response({"error": "try later"}, status=503)
        call["status"] = 200
        self.calls.append(call)
        duplicate = key in self.completed
        self.completed[key] += 1
        return web.json_response({"ok": True, "duplicate": duplicate})

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        for entity, times in (body.get("fail") or {}).items():
            self.fail_left[str(entity)] = int(times)
        self.reject.update(str(e) for e in body.get("reject") or ())
        for entity, times in (body.get("reject_next") or {}).items():
            self.reject_next[str(entity)] = int(times)
        self.mode = str(body.get("mode", self.mode))
        if body.get("reset"):
            self.calls.clear()
            self.completed.clear()
            self.fail_left.clear()
            self.reject.clear()
        return web.json_response({"ok": True})

    async def list_calls(self, request: web.Request) -> web.Response:
        return web.json_response([{k: v for k, v in c.items() if k != "body"} for c in self.calls])

    async def list_completed(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.completed))

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def web_app(self) -> web.Application:
        app = web.Application()
        for path in ("/orders", "/skus", "/imports/items"):
            app.router.add_post(path, self.handle)
        app.router.add_post("/_control", self.control)
        app.router.add_get("/_calls", self.list_calls)
        app.router.add_get("/_completed", self.list_completed)
        app.router.add_get("/healthz", self.healthz)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each call takes")
    args = parser.parse_args()
    web.run_app(Partner(args.delay).web_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
