"""Calling the partner API the examples sync to, with the delivery's idempotency key.

aiohttp rather than httpx here: on the hot path httpx's async stack costs several times
more CPU per call (its backend detection alone re-imports on every request).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from streams import EventContext, PermanentError, Settings, TransientError

_session: aiohttp.ClientSession | None = None
_base = ""


def _http() -> aiohttp.ClientSession:
    global _session, _base
    if _session is None or _session.closed:
        url = Settings.from_env().partner_url
        if not url:
            raise PermanentError("STREAMS_PARTNER_URL is not set; point it at the partner API")
        _base = url
        _session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5.0),
            connector=aiohttp.TCPConnector(limit=64),
        )
    return _session


async def post(path: str, body: dict[str, Any], ctx: EventContext) -> None:
    """POST `body` with `Idempotency-Key`; 5xx/429/timeouts are transient, other 4xx permanent."""
    session = _http()
    try:
        async with session.post(
            _base + path, json=body, headers={"Idempotency-Key": ctx.idempotency_key}
        ) as response:
            status = response.status
            await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise TransientError(f"partner {path} unreachable: {type(exc).__name__}") from exc
    if status >= 500 or status == 429:
        raise TransientError(f"partner {path} answered {status}")
    if status >= 400:
        raise PermanentError(f"partner {path} refused the call with {status}")
