"""Asking a Kafka cluster whether it answers, with a deadline and no librdkafka noise.

librdkafka retries a refused login or a failed TLS handshake forever and only says so
through its error callback and log. `broker_count` listens to both while it waits, so
wrong credentials or a wrong CA end the wait at once with one line naming the fix,
instead of a timeout that looks like an unreachable broker.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.errors import AuthError, UnreachableError

_quiet = logging.getLogger("streams.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False

#: The probe asks in slices, looking at what librdkafka reported in between: short at
#: first (a refused login shows within a second), doubling so that a slow but healthy
#: broker still gets the time it needs to answer one request.
_FIRST_SLICE_S = 0.25


def quiet_logger() -> logging.Logger:
    """A logger that swallows librdkafka's retry chatter (errors surface as exceptions)."""
    return _quiet


def _detail(text: str) -> str:
    """librdkafka's message without its `proto://host:port/id: ` prefix and `(after ...)` tail."""
    text = re.sub(r"^\S+://\S+?: ", "", text)
    return re.sub(r"\s*\(after \d+ms in state \w+\)\s*$", "", text).strip()


class _Listener(logging.Handler):
    """Collects what librdkafka says about failed connections (error callback and log)."""

    def __init__(self) -> None:
        super().__init__()
        self.auth: str | None = None
        self.tls: str | None = None
        #: Connections the broker closed at the very first request: a TLS listener
        #: hanging up on a client that speaks plaintext.
        self.closed_at_hello = 0
        self.logger = logging.Logger("streams.librdkafka.probe")
        self.logger.addHandler(self)
        self.logger.propagate = False

    def on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION and self.auth is None:
            self.auth = _detail(error.str())
        elif error.code() == KafkaError._SSL and self.tls is None:
            self.tls = _detail(error.str())

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "Disconnected" in message and "APIVERSION_QUERY" in message:
            self.closed_at_hello += 1

    def raise_if_refused(self, bootstrap: str) -> None:
        if self.auth is not None:
            raise AuthError(
                f"Kafka at {bootstrap} refused the login: {self.auth}; check STREAMS_KAFKA_SASL_USERNAME, "
                "STREAMS_KAFKA_SASL_PASSWORD and STREAMS_KAFKA_SASL_MECHANISM"
            )
        if self.tls is not None:
            reason = self.tls
            if "certificate verify failed" in reason:
                reason = "the broker's certificate is not signed by a CA this client trusts"
            raise AuthError(
                f"TLS handshake with Kafka at {bootstrap} failed: {reason}; set STREAMS_KAFKA_SSL_CAFILE "
                "to the CA that signed the brokers' certificates"
            )

    def hint(self) -> str:
        if self.closed_at_hello:
            return (
                "; the broker hung up on the first request, as a TLS listener does to a plaintext "
                "client: set STREAMS_KAFKA_SECURITY_PROTOCOL=SASL_SSL and its credentials"
            )
        return ""


def broker_count(bootstrap: str, timeout_s: float = 5.0, extra: dict[str, Any] | None = None) -> int:
    """The number of brokers in the cluster behind `bootstrap`.

    Raises AuthError at the first refused login or failed TLS handshake, UnreachableError
    when nothing answered within `timeout_s`.
    """
    listener = _Listener()
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "socket.timeout.ms": int(timeout_s * 1000),
        **(extra or {}),
        "logger": listener.logger,
        "error_cb": listener.on_error,
    }
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    last: KafkaException | None = None
    slice_s = _FIRST_SLICE_S
    while True:
        left = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(timeout=max(0.05, min(slice_s, left)))
        except KafkaException as exc:
            last = exc
        else:
            return len(metadata.brokers)
        slice_s *= 2
        admin.poll(0)  # serves the error callback and the log
        listener.raise_if_refused(bootstrap)
        if time.monotonic() >= deadline:
            break
    reason = last.args[0].str() if last is not None else "no answer"
    raise UnreachableError(
        f"Kafka at {bootstrap} did not answer within {timeout_s:g}s ({reason}){listener.hint()}"
    )
