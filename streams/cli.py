"""The `streams` console script: argument parsing, logging setup, one-line errors."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from streams.config import Settings
from streams.errors import StreamsError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:

    parser = _Parser(
        prog="streams",
        description="Retry-safe, idempotent event processing on Kafka. "
        "Configuration comes from STREAMS_* environment variables and an optional streams.toml "
        "(or $STREAMS_CONFIG); the environment wins (see README).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for module in _command_modules():
        module.add_to(sub)
    return parser


def _command_modules() -> list:  # type: ignore[type-arg]
    import importlib

    names = ["local", "schemas", "worker", "demo", "topics", "produce", "tail", "dlq", "status", "deploy"]
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(f"streams.commands.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"streams.commands.{name}":
                raise
    return modules


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings) or 0)
    except StreamsError as exc:
        print(f"streams: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("streams: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `streams ... | head`: the reader left; say nothing more.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout for interpreter exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
