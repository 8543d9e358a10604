"""`streams status ENTITY_ID`: the ledger's entries for an entity, from a worker's HTTP endpoint.

Any worker of the app answers for every entity: it proxies the request to the worker that
owns the entity's ledger partition (see streams/web.py). `--worker` may be given more
than once; the first that answers is used.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from streams.config import Settings, _parse_url
from streams.errors import StreamsError, UnreachableError

TIMEOUT_S = 10.0


def add_to(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser(
        "status",
        help="an entity's ledger entries (idempotency keys, states, attempts) from a running worker",
        description="Ask a worker's web endpoint for the ledger entries of ENTITY_ID, per handler. "
        "Any worker of the app answers (it routes to the one owning the entity's partition).",
    )
    status.add_argument("entity", metavar="ENTITY_ID")
    status.add_argument(
        "--worker",
        action="append",
        metavar="URL",
        help="a worker's web URL (default http://127.0.0.1:$STREAMS_WEB_PORT; repeatable: first that answers)",
    )
    status.add_argument("--handler", action="append", metavar="NAME", help="only this handler (default: all)")
    status.add_argument("--json", action="store_true", help="print {handler: {key: entry}} as JSON")
    status.set_defaults(func=_status)


def _get(client: httpx.Client, url: str) -> Any:
    response = client.get(url)
    if response.status_code == 503:
        raise StreamsError(
            f"{url}: the worker is not ready ({response.text[:100]}); retry when its /readyz is 200"
        )
    if response.status_code == 404:
        raise StreamsError(
            f"{url}: {response.json().get('error', 'not found') if response.headers.get('content-type', '').startswith('application/json') else 'not found'}"
        )
    response.raise_for_status()
    return response.json()


def _worker(client: httpx.Client, urls: list[str]) -> tuple[str, list[str]]:
    """The first worker that answers, and the handlers it runs."""
    problems = []
    for url in urls:
        try:
            handlers = _get(client, f"{url}/handlers")
            return url, [h["name"] for h in handlers]
        except httpx.HTTPError as exc:
            problems.append(f"{url} ({type(exc).__name__})")
    raise UnreachableError(
        f"no worker answered at {', '.join(problems)}; start `streams worker` or pass --worker URL"
    )


def _when(ms: Any) -> str:
    return datetime.fromtimestamp(int(ms) / 1000).isoformat(sep=" ", timespec="seconds") if ms else "-"


def _status(args: argparse.Namespace, settings: Settings) -> int:
    urls = (
        [_parse_url("--worker", u) for u in args.worker]
        if args.worker
        else [f"http://127.0.0.1:{settings.web_port}"]
    )
    with httpx.Client(timeout=TIMEOUT_S) as client:
        url, names = _worker(client, urls)
        if args.handler:
            unknown = sorted(set(args.handler) - set(names))
            if unknown:
                raise StreamsError(f"--handler {', '.join(unknown)}: the worker runs {', '.join(names)}")
            names = args.handler
        try:
            ledgers = {
                h: _get(client, f"{url}/ledger/{quote(h, safe='')}/{quote(args.entity, safe='')}")
                for h in names
            }
        except httpx.HTTPError as exc:
            raise UnreachableError(
                f"worker at {url} did not answer ({type(exc).__name__}); is it still running?"
            ) from None
    if args.json:
        print(json.dumps(ledgers))
        return 0
    quarantines = {h: v.pop("~quarantine") for h, v in ledgers.items() if "~quarantine" in v}
    total = sum(len(v) for v in ledgers.values())
    print(f"entity {args.entity}: {total} ledger entries")
    for handler, entries in ledgers.items():
        if not entries and handler not in quarantines:
            continue
        print(f"\n{handler}")
        if handler in quarantines:
            q = quarantines[handler]
            print(
                f"  QUARANTINED since {_when(q.get('since_ms'))} behind event {q.get('blocker_event_id')}: "
                f"{q.get('parked', 0)} event(s) parked, released in order when it succeeds"
            )
        for key, e in sorted(entries.items(), key=lambda kv: kv[1].get("last_seen_ms", 0)):
            error = f"  last error {e['last_error_class']}" if e.get("last_error_class") else ""
            print(
                f"  {key:<40} {e.get('state', '?'):<11} attempts {e.get('attempts', 0):>2}  "
                f"first {_when(e.get('first_seen_ms'))}  last {_when(e.get('last_seen_ms'))}  "
                f"event {e.get('event_id', '-')}{error}"
            )
    return 0 if total else 1
