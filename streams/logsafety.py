"""Keeping record payloads out of log output.

At DEBUG, faust and aiokafka log every record they send or drop with its key and value
bytes (`send: topic=... k=... v=...`, `Sending (key=... value=...)`), which puts the
events' sensitive fields (an email, a pre-signed URL) into the worker's log. `install()`
wraps the log-record factory so that any bytes argument of a record from those libraries
is logged as its length instead. Records are only built for enabled levels, so at INFO
this costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

#: Loggers whose records may carry Kafka record bytes as arguments.
_PAYLOAD_LOGGERS = ("faust", "aiokafka", "mode")
_MARK = "_streams_payloads_masked"


def _mask(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    return value


def _masked_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(_mask(a) for a in args)
    if isinstance(args, Mapping):
        return {k: _mask(v) for k, v in args.items()}
    return _mask(args)


def install() -> None:
    """Mask bytes arguments of faust/aiokafka log records, once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, _MARK, False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.args and record.name.startswith(_PAYLOAD_LOGGERS):
            record.args = _masked_args(record.args)
        return record

    setattr(factory, _MARK, True)
    logging.setLogRecordFactory(factory)
