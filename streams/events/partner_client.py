"""Calling the partner API the examples sync to, with the delivery's idempotency key."""

from __future__ import annotations

from typing import Any

import httpx

from streams import EventContext, PermanentError, Settings, TransientError

_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        url = Settings.from_env().partner_url
        if not url:
            raise PermanentError("STREAMS_PARTNER_URL is not set; point it at the partner API")
        _client = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(5.0))
    return _client


async def post(path: str, body: dict[str, Any], ctx: EventContext) -> None:
    """POST `body` with `Idempotency-Key`; 5xx/429/timeouts are transient, other 4xx permanent."""
    try:
        response = await _http().post(path, json=body, headers={"Idempotency-Key": ctx.idempotency_key})
    except httpx.TransportError as exc:
        raise TransientError(f"partner {path} unreachable: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"partner {path} answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentError(f"partner {path} refused the call with {response.status_code}")
