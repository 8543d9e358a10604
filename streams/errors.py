"""The exception hierarchy every public error of streams derives from.

The CLI turns any `StreamsError` into one line on stderr and a non-zero exit, so
each message must say what went wrong and how to fix it.
"""

from __future__ import annotations


class StreamsError(Exception):
    """Base class of every error streams raises on purpose."""


class ConfigError(StreamsError):
    """A configuration value is missing or malformed; the message names the variable."""


class InfraError(StreamsError):
    """The local broker or registry could not be fetched, started, stopped or reached."""


class UnreachableError(StreamsError):
    """A configured Kafka broker or schema registry did not answer in time."""


class AuthError(StreamsError):
    """A server refused the credentials, or the TLS handshake with it failed."""
