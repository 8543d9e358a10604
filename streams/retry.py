"""Retry policy: which errors are transient, how long to back off, when to give up.

Transient errors are retried a few times in-process with exponential backoff and
jitter, then moved to the `<source>.retry` topic with a not-before time (so the source
partition keeps flowing), and dead-lettered once the policy's budget is spent.
Permanent errors are dead-lettered at once.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import httpx

from streams.errors import StreamsError


class TransientError(StreamsError):
    """Raise from a handler for a failure worth retrying (a timeout, a 503, a lock)."""


class PermanentError(StreamsError):
    """Raise from a handler for a failure no retry can fix (a 400, a validation error)."""


class HandlerTimeout(TransientError):
    """The handler ran past its deadline."""


#: Failures of the event itself or of the code: retrying cannot change the outcome.
DEFAULT_PERMANENT: tuple[type[BaseException], ...] = (
    PermanentError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    LookupError,
    NotImplementedError,
)
#: Failures of the world around the handler; everything unknown is treated like these.
DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
    httpx.TransportError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How a handler's failures are retried.

    `attempts` in-process tries per delivery (backoff `backoff_s * 2**n`, capped at
    `max_backoff_s`, +-`jitter`), then up to `retry_topic_hops` trips through the
    retry topic, waiting `retry_delays_s[i]` (the last one repeats) before each.
    """

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    jitter: float = 0.2
    retry_topic_hops: int = 3
    retry_delays_s: tuple[float, ...] = (5.0, 30.0, 120.0)
    transient: tuple[type[BaseException], ...] = ()
    permanent: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.retry_topic_hops < 0:
            raise ValueError("RetryPolicy.retry_topic_hops must be 0 or more")
        if not self.retry_delays_s and self.retry_topic_hops:
            raise ValueError("RetryPolicy.retry_delays_s needs a delay per retry-topic hop")

    @property
    def max_attempts(self) -> int:
        """Total handler attempts before an event is dead-lettered."""
        return self.attempts * (1 + self.retry_topic_hops)

    def is_transient(self, exc: BaseException) -> bool:
        """Per-handler overrides first, then the defaults; unknown errors are transient."""
        if self.permanent and isinstance(exc, self.permanent):
            return False
        if self.transient and isinstance(exc, self.transient):
            return True
        if isinstance(exc, httpx.HTTPStatusError):
            code = exc.response.status_code
            return code >= 500 or code in (408, 425, 429)
        return not isinstance(exc, DEFAULT_PERMANENT)

    def backoff(self, attempt_in_delivery: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after in-process attempt number `attempt_in_delivery` (1-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt_in_delivery - 1))
        spread = base * self.jitter
        return float(max(0.0, base + (rng or random).uniform(-spread, spread)))

    def retry_delay(self, hop: int) -> float:
        """Seconds before the `hop`-th (1-based) delivery from the retry topic."""
        return self.retry_delays_s[min(hop, len(self.retry_delays_s)) - 1]
