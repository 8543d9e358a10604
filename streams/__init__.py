"""streams: retry-safe, idempotent event processing on Kafka.

The public API: declare handlers with `Handlers`, collect them in an `App`, run it with
`streams worker`; publish with `Publisher`; raise `TransientError` / `PermanentError`
from handlers to steer retries.
"""

from streams.app import App
from streams.config import Settings
from streams.context import EventContext
from streams.errors import ConfigError, StreamsError
from streams.handlers import Handlers, ItemResult
from streams.retry import PermanentError, RetryPolicy, TransientError

__all__ = [
    "App",
    "ConfigError",
    "EventContext",
    "Handlers",
    "ItemResult",
    "PermanentError",
    "RetryPolicy",
    "Settings",
    "StreamsError",
    "TransientError",
]
__version__ = "0.1.0"
