"""`streams worker` runs an app's handlers; `streams handlers` lists what it declares."""

from __future__ import annotations

import argparse
import dataclasses

from streams.app import load_app
from streams.config import Settings, _parse_workspace


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser("worker", help="run the app's handlers (a faust worker) until stopped")
    worker.add_argument(
        "--app",
        metavar="MODULE:ATTR",
        help="the App to run (default $STREAMS_APP, streams.examples:app)",
    )
    worker.add_argument(
        "--workspace", metavar="NAME", help="consume and publish only under this topic prefix"
    )
    worker.add_argument(
        "--web-port",
        type=int,
        metavar="PORT",
        help="HTTP port for /metrics, /healthz, /readyz (default $STREAMS_WEB_PORT, 6066)",
    )
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warn", "error"])
    worker.set_defaults(func=_worker)

    handlers = sub.add_parser(
        "handlers", help="list the declared handlers: topic, schema, key, retries, batching"
    )
    handlers.add_argument("--app", metavar="MODULE:ATTR", help="the App to list (default $STREAMS_APP)")
    handlers.set_defaults(func=_handlers)


def _settings(args: argparse.Namespace, settings: Settings) -> Settings:
    changes: dict[str, object] = {}
    if getattr(args, "app", None):
        changes["app"] = args.app
    if getattr(args, "workspace", None) is not None:
        changes["workspace"] = _parse_workspace("--workspace", args.workspace)
    if getattr(args, "web_port", None) is not None:
        changes["web_port"] = args.web_port
    return dataclasses.replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    settings = _settings(args, settings)
    run_worker(load_app(settings.app), settings, loglevel=args.loglevel)
    return 0


def _handlers(args: argparse.Namespace, settings: Settings) -> int:
    settings = _settings(args, settings)
    app = load_app(settings.app)
    print(f"app {app.name} ({settings.app}), guarantee {app.guarantee}")
    for spec in app.handlers:
        topic = settings.topic(spec.topic)
        contract = app.contract(spec.schema or spec.topic)
        r = spec.retry
        batch = (
            f"batches of <= {spec.batch.max_records} / {spec.batch.max_wait_s:g}s"
            if spec.batch
            else "one event at a time"
        )
        print(f"\n{spec.name}  [{spec.kind}]  {spec.description}")
        print(f"  topic            {topic}  (retry {topic}.retry, dead letters {topic}.dlq)")
        print(f"  schema           {contract.path.name} ({contract.schema.name}), subject {topic}-value")
        print("  entity id        the record key")
        print(f"  idempotency key  {spec.idempotency_key_doc}")
        delays = ", ".join(f"{d:g}s" for d in r.retry_delays_s)
        print(
            f"  retries          {r.attempts} in-process (backoff {r.backoff_s:g}s x2, max {r.max_backoff_s:g}s), "
            f"then {r.retry_topic_hops} via retry topic ({delays}); deadline {spec.deadline_s:g}s"
        )
        print(f"  batching         {batch}")
        if spec.side_effects:
            print(f"  side effects     {'; '.join(spec.side_effects)}")
        if spec.publishes:
            print(f"  publishes        {', '.join(settings.topic(t) for t in spec.publishes)}")
    return 0
