"""Making error text safe to publish: bounded, one line, no sensitive values in it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
MAX_MESSAGE = 500


def sensitive_values(event: Mapping[str, Any] | None, fields: Iterable[str]) -> list[str]:
    """The string forms of the event's sensitive top-level (or dotted) field values."""
    if not event:
        return []
    values = []
    for path in fields:
        node: Any = event
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None and str(node):
            values.append(str(node))
    return values


def safe_message(exc: BaseException, secrets: Iterable[str] = (), limit: int = MAX_MESSAGE) -> str:
    """`str(exc)` with every secret replaced, on one line, at most `limit` characters."""
    text = " ".join(str(exc).split())
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def error_class(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
