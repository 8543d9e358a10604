"""A lean recording partner API for the chaos scenarios, with a switchable outage.

    python -m tests.chaos.partner --port 8901

Speaks the same routes as `streams.partner` (POST /orders, /skus, /imports/items with an
`Idempotency-Key` header; GET /_completed counts 2xx answers per key), but keeps counters
instead of every call (100,000 events must not cost the test machine its memory), and adds
what fault injection needs:

- POST /_control {"outage": {"seconds": 60, "mode": M, "hang_s": 8}} fails *every* call
  for that long: M = "500" answers 500; "timeout" holds each call past the client's
  timeout (then answers 503, so a call the client gave up on is never a completion);
  "mixed" picks one of the two per call; "500-then-timeout" does the first half of the
  outage one way and the second half the other.
- GET /_stats: call and completion counters, cheap enough to poll.
- GET /_first: the time of each key's first 2xx answer (bounding re-sends after a SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter

from aiohttp import web


class ChaosPartner:
    def __init__(self, seed: int = 0) -> None:
        self.completed: Counter[str] = Counter()
        self.first_ok: dict[str, float] = {}
        self.answers: Counter[str] = Counter()
        self.outage_until = 0.0
        self.outage_mode = "500"
        self.outage_s = 0.0
        self.hang_s = 8.0
        self.rng = random.Random(seed)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()  # the body is not needed: the key says what the call is
        key = request.headers.get("Idempotency-Key", "")
        if time.monotonic() < self.outage_until:
            mode = self.outage_mode
            if mode == "500-then-timeout":
                mode = "500" if self.outage_until - time.monotonic() > self.outage_s / 2 else "timeout"
            elif mode == "mixed":
                mode = self.rng.choice(("500", "timeout"))
            if mode == "timeout":
                self.answers["timeout"] += 1
                # Held past the client's timeout (5 s in streams.events.partner_client), and
                # then refused: a call the client gave up on must not count as done here.
                await asyncio.sleep(self.hang_s)
                return web.json_response({"error": "too late"}, status=503)
            self.answers["500"] += 1
            return web.json_response({"error": "outage"}, status=500)
        self.answers["200"] += 1
        self.completed[key] += 1
        self.first_ok.setdefault(key, time.time())
        return web.json_response({"ok": True, "duplicate": self.completed[key] > 1})

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        outage = body.get("outage")
        if outage:
            self.outage_mode = str(outage.get("mode", "500"))
            self.hang_s = float(outage.get("hang_s", self.hang_s))
            self.outage_s = float(outage["seconds"])
            self.outage_until = time.monotonic() + self.outage_s
        # The count at the very moment the outage began: a client reading it separately
        # would race the calls completing in between.
        return web.json_response({"ok": True, "completed_keys": len(self.completed)})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "answers": dict(self.answers),
                "completed_keys": len(self.completed),
                "completions": sum(self.completed.values()),
                "resent_keys": sum(1 for n in self.completed.values() if n > 1),
                "outage_left_s": max(0.0, self.outage_until - time.monotonic()),
            }
        )

    async def list_completed(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.completed))

    async def list_first(self, request: web.Request) -> web.Response:
        return web.json_response(self.first_ok)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def web_app(self) -> web.Application:
        app = web.Application()
        for path in ("/orders", "/skus", "/imports/items"):
            app.router.add_post(path, self.handle)
        app.router.add_post("/_control", self.control)
        app.router.add_get("/_stats", self.stats)
        app.router.add_get("/_completed", self.list_completed)
        app.router.add_get("/_first", self.list_first)
        app.router.add_get("/healthz", self.healthz)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    web.run_app(ChaosPartner(args.seed).web_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
