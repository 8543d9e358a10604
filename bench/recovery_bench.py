"""`python -m bench recovery`: time to restore a ledger from its changelog.

    python -m bench recovery --entries 1000000

1. Declare the app's topics as a worker would (`streams.topics.ensure(declared(...))`:
   source, retry, DLQ, status and the compacted ledger changelog, `--partitions` each).
2. Write `--entries` ledger entries straight to the changelog with confluent-kafka: key
   the entity ID, value the JSON a handler's success writes (one COMPLETED entry, ~330
   bytes), spread evenly over the partitions - what a worker that completed that many
   distinct entities leaves behind.
3. Start a real streams worker (`bench/_ledger_worker.py`, pinned to core 1, the broker
   to core 0) on an empty state directory and time until faust's table recovery has
   completed (the worker's `/readyz` turns ready at that moment), counting the entries
   in its RocksDB partitions to check none is missing.
4. Stop it and start it again on the state directory it left: the restart replays only
   the changelog's tail past the offsets its RocksDB recorded.

Prints both restores and writes bench/results/recovery-<run>.json. The run's topics and
state directory are deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from confluent_kafka import Producer

from bench._ledger_worker import app_and_settings
from bench.memory_bench import run_dirs, run_id_now, run_worker, worker_env, write
from bench.pipeline import generate, measure
from bench.pipeline.run import _broker_pid, _stack
from bench.pipeline.wire import REPO_ROOT
from streams.topics import admin, declared, ensure


def ledger_value(i: int, source: str, partition: int, now_ms: int) -> bytes:
    event_id = f"{i:08x}-0000-4000-8000-{i:012x}"
    entry = {
        "state": "COMPLETED",
        "attempts": 1,
        "first_seen_ms": now_ms,
        "last_seen_ms": now_ms,
        "event_id": event_id,
        "last_error_class": None,
        "completed_at_ms": now_ms,
        "completed_by": f"{source}/{partition}/{i}",
    }
    return json.dumps({event_id: entry}, separators=(",", ":")).encode()


def fill_changelog(bootstrap: str, topic: str, source: str, entries: int, partitions: int) -> float:
    """Write the entries; returns the seconds it took."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000, "enable.idempotence": True}
    )
    now_ms = int(time.time() * 1000)
    t0 = time.monotonic()
    for i in range(entries):
        p = i % partitions
        key = f"entity-{i:010d}".encode()
        value = ledger_value(i, source, p, now_ms)
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=p)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError(f"could not write every entry to {topic}")
    return time.monotonic() - t0


def _restore(label: str, lines: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    found = next((ln for ln in lines if ln.get("phase") == "recovered"), None)
    row: dict[str, Any] = {"restore": label, "wall_s": round(wall_s, 2)}
    if found is None:
        row["error"] = next((ln.get("error") for ln in lines if ln.get("phase") == "error"), "no result")
        return row
    row.update({k: v for k, v in found.items() if k != "phase"})
    return row


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench recovery", description=__doc__.split("\n")[0])
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--timeout", type=float, default=1800.0, help="per worker start (s)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the first restore with py-spy (collapsed stacks in bench/results/tmp/<run>/)",
    )
    args = p.parse_args(argv)
    bootstrap, registry = _stack()
    run_id, now = run_id_now()
    work, logs = run_dirs(run_id)
    env = worker_env(run_id, "recovery", args.partitions, bootstrap, registry, work / "recovery")
    app, settings = app_and_settings(env)
    changelog = f"{env.group}-bench-ledger-changelog"
    print(f"run {run_id}: {args.entries:,} ledger entries in {changelog} ({args.partitions} partitions)")
    rows: list[dict[str, Any]] = []
    fill_s = 0.0
    try:
        ensure(admin(bootstrap), declared(app, settings))
        fill_s = fill_changelog(bootstrap, changelog, env.source_topic, args.entries, args.partitions)
        print(f"  changelog written in {fill_s:.1f} s", flush=True)
        extra = {"BENCH_LEDGER_MODE": "recovery"}
        with measure.pinned(_broker_pid(None)):
            for label in ("empty state dir", "restart on kept state dir"):
                t0 = time.monotonic()
                spy = logs / "recovery.pyspy.txt" if args.profile and not rows else None
                lines = run_worker(
                    env, extra, logs / "recovery.jsonl", logs / "recovery.log", args.timeout, profile=spy
                )
                rows.append(_restore(label, lines, time.monotonic() - t0))
                print(f"  {label}: {rows[-1]}", flush=True)
    finally:
        generate.delete_topics_containing(bootstrap, f"bench.{run_id}")
        shutil.rmtree(work, ignore_errors=True)
    ok = len(rows) == 2 and all("error" not in r for r in rows) and rows[0].get("entries") == args.entries
    print()
    for r in rows:
        if "error" in r:
            print(f"{r['restore']}: failed ({r['error']})")
            continue
        rate = args.entries / r["since_assigned_s"] if r.get("since_assigned_s") else 0.0
        print(
            f"{r['restore']}: {r['entries']:,} entries ready {r['since_start_s']} s after process start, "
            f"{r['since_assigned_s']} s after partition assignment"
            + (f" ({rate:,.0f} entries/s)" if r is rows[0] else "")
            + f"; CPU {r['cpu_s']} s, peak RSS {r['hwm_mb']} MB, ledger on disk {r['disk_mb']} MB"
        )
    parameters = {
        "run_id": run_id,
        "started_at": now.isoformat(),
        "entries": args.entries,
        "partitions": args.partitions,
        "changelog": changelog,
        "changelog_fill_s": round(fill_s, 2),
        "bootstrap": bootstrap,
        "app_core": measure.APP_CORE,
        "broker_core": measure.BROKER_CORE,
        "ok": ok,
    }
    path = write(f"recovery-{run_id}.json", {"parameters": parameters, "restores": rows})
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
