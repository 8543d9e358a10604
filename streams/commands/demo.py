"""`streams demo`: the end-to-end story on the local broker and registry."""

from __future__ import annotations

import argparse

from streams.config import Settings


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="run the example handlers end to end and print the status stream")
    demo.add_argument("--timeout", type=float, default=120.0, metavar="S", help="give up after S seconds")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams import demo
    from streams.local.stack import LocalStack

    if not settings.kafka_bootstrap or not settings.schema_registry_url:
        info = LocalStack(settings).info()
        if info is None:
            from streams.errors import ConfigError

            raise ConfigError(
                "no broker configured and the local stack is down; run `streams local up` first"
            )
        # The stack's endpoints, and its credentials if it is a secure one.
        settings = LocalStack(settings).client_settings(settings)
    return demo.run(settings, timeout_s=args.timeout)
