"""`python -m bench orders`: one worker running the example orders handler, end to end.

Publishes N order events (a share of them duplicates) to a fresh workspace, starts the
recording partner API (answering at once: a no-op partner) and one `streams worker`
with the example app, and reports events per second from the first status to the
last terminal status, plus how many calls the partner saw. Run on the local stack.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import uuid
from pathlib import Path

from streams.config import Settings
from streams.examples import app
from streams.publish import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.harness import PartnerServer, StatusReader, WorkerProc, wait_for


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench orders", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--duplicates", type=float, default=0.2)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    settings.require_kafka()
    workspace = f"bench{uuid.uuid4().hex[:6]}"
    settings = dataclasses.replace(settings, workspace=workspace)
    pub = Publisher(app, settings)
    rng = random.Random(1)
    unique = int(args.events * (1 - args.duplicates))
    events = [
        pub.envelope("orders.created", f"order-{i}", {"customer_id": "c", "total_cents": 1})
        for i in range(unique)
    ]
    stream = events + [rng.choice(events) for _ in range(args.events - unique)]
    rng.shuffle(stream)
    for event in stream:
        pub.publish("orders.created", event)
    pub.flush()
    tmp = Path(tempfile.mkdtemp(prefix="streams-bench-orders-"))
    partner = PartnerServer(tmp / "partner.log")
    worker = WorkerProc(
        "streams.examples:app",
        workspace,
        tmp / "state",
        partner.url,
        tmp / "worker.log",
        extra_env={"STREAMS_WORKSPACE": workspace},
    )
    statuses = StatusReader(
        settings.kafka_bootstrap or "", settings.schema_registry_url or "", f"{workspace}.streams.status"
    )
    try:
        worker.wait_ready(120)
        done = wait_for(
            lambda: len(statuses.read()) >= args.events and statuses.statuses, 600, "every status"
        )
        first = min(s["finished_at"].timestamp() for s in done)
        last = max(s["finished_at"].timestamp() for s in done)
        calls = len(partner.calls())
        rate = len(done) / max(last - first, 1e-9)
        print(
            f"orders handler, one worker, no-op partner: {len(done)} events ({unique} unique) "
            f"in {last - first:.1f}s = {rate:,.0f} events/s; partner calls {calls}"
        )
    finally:
        worker.stop()
        partner.stop()
        statuses.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
