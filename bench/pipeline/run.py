"""The pipeline benchmark's entry point: generate, run each system, report.

    python -m bench pipeline --events 50000 --size 512 --duplicates 0.2 --entities 10000 \
        --systems raw,floor,faust-naive,quix,streams,streams-unsafe --half-rate

The README's run is in its performance section. Besides the systems of
`bench.pipeline.systems`: `--half-rate` paces each system's latency tail at half its own
backlog rate; `--profile SYSTEMS` samples them with py-spy during the backlog (see
`bench.pipeline.profile`); `--variant NAME='{json}'` adds `streams` with experimental
faust settings (see `bench/pipeline/systems/streams_app.py`), to compare in one run.

1. Find the local stack (STREAMS_KAFKA_BOOTSTRAP / STREAMS_SCHEMA_REGISTRY_URL, else
   `streams local up`, which is idempotent) and the broker's PID.
2. Register the order schema and the `BenchStatus` schema in the real registry; build N
   backlog events and a tail of `--latency-events` more (same duplicate share) once.
3. Pin the broker to core 0 (restored at the end, whatever happens). For each system, one
   after the other: create its source and status topics (`bench.<run>.<system>.*`),
   write the byte-identical backlog to its source, launch it on core 1 with a fresh
   group and state dir, wait for N statuses, produce the paced tail (at --latency-rate,
   or half the backlog's events/s with --half-rate), wait for all
   statuses, stop it by PID, read its status topic back and compute the row.
4. Print the table with ratios to floor and raw; write bench/results/<run>.json; delete
   the run's topics (unless --keep-topics).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import confluent_kafka

from bench.pipeline import generate, measure, report, systems
from bench.pipeline.wire import REPO_ROOT, STATUS_SCHEMA, SystemEnv, order_schema

DEFAULT_SYSTEMS = "raw,floor,faust-naive,quix,streams,streams-unsafe"
BROKER_PID_FILE = REPO_ROOT / ".streams" / "local" / "kafka" / "broker.pid"


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=50_000, help="backlog events N")
    p.add_argument("--size", type=int, default=512, help="framed value size in bytes")
    p.add_argument("--duplicates", type=float, default=0.2, help="share of re-deliveries")
    p.add_argument("--entities", type=int, default=10_000, help="distinct entity IDs")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--systems", default=DEFAULT_SYSTEMS, help=f"of {','.join(systems.NAMES)}")
    p.add_argument("--latency-events", type=int, default=2_000)
    p.add_argument(
        "--latency-rate", type=float, default=500.0, help="tail events per second (a cap with --half-rate)"
    )
    p.add_argument(
        "--half-rate",
        action="store_true",
        help="pace each system's tail at half its own backlog events/s (capped by --latency-rate)",
    )
    p.add_argument(
        "--profile",
        default="",
        help="systems to sample with py-spy during the backlog (comma-separated); "
        "collapsed stacks in bench/results/tmp/<run>/<system>.pyspy.txt",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per phase, per system (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--broker-pid", type=int, default=None, help="default: the local stack's")
    p.add_argument("--quix-python", default=None, help="python of the quix virtualenv")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an extra system: streams (safe) with faust settings from JSON, run after "
        "--systems (e.g. 'streams-linger={\"producer_linger\": 0.005}'); repeatable",
    )
    p.add_argument("--keep-topics", action="store_true")
    return p.parse_args(argv)


def _stack() -> tuple[str, str]:
    bootstrap = os.environ.get("STREAMS_KAFKA_BOOTSTRAP")
    registry = os.environ.get("STREAMS_SCHEMA_REGISTRY_URL")
    if bootstrap and registry:
        return bootstrap, registry
    out = subprocess.run(
        [str(Path(sys.executable).with_name("streams")), "local", "up"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = dict(re.findall(r"export (STREAMS_\w+)=(\S+)", out))
    return found["STREAMS_KAFKA_BOOTSTRAP"], found["STREAMS_SCHEMA_REGISTRY_URL"]


def _broker_pid(explicit: int | None) -> int | None:
    if explicit is not None:
        return explicit
    try:
        return int(BROKER_PID_FILE.read_text().strip())
    except (OSError, ValueError):
        print("bench: broker PID unknown, the broker is not pinned", file=sys.stderr)
        return None


def _versions(spec: systems.SystemSpec) -> str:
    """Library versions as seen by the system's own interpreter."""
    probe = {
        "quix": "import quixstreams as q, confluent_kafka as c; print('quixstreams', "
        "q.__version__, 'confluent-kafka', c.__version__, 'librdkafka', c.libversion()[0])",
        "faust-naive": "import faust, aiokafka, rocksdict as r; print('faust-streaming', "
        "faust.__version__, 'aiokafka', aiokafka.__version__)",
    }.get(spec.name, "import confluent_kafka as c; print('confluent-kafka', c.__version__)")
    out = subprocess.run([spec.python, "-c", probe], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()[-200:]


def main(argv: list[str]) -> int:
    args = _args(argv)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    specs = [systems.get(n, args.quix_python) for n in names]
    for v in args.variant:
        vname, _, tuning = v.partition("=")
        specs.append(systems.variant(vname.strip(), tuning))
        names.append(vname.strip())
    bootstrap, registry = _stack()
    now = dt.datetime.now(dt.UTC)
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    topic_marker = f"bench.{run_id}"

    schema, schema_source = order_schema()
    order_subject, order_id = generate.register(registry, "bench.orders", schema)
    _, status_id = generate.register(registry, "bench.status", STATUS_SCHEMA)
    gen = generate.EventGenerator(schema, order_id, args.size, args.entities, args.duplicates, args.seed)
    backlog = gen.take(args.events)
    tail = gen.take(args.latency_events)
    mean_size = sum(len(v) for _, v in backlog) / len(backlog)

    work = REPO_ROOT / ".streams" / "bench" / run_id
    logs = report.RESULTS_DIR / "tmp" / run_id
    logs.mkdir(parents=True, exist_ok=True)
    parameters: dict[str, Any] = {
        "run_id": run_id,
        "started_at": now.isoformat(),
        "events": args.events,
        "size": args.size,
        "mean_value_bytes": round(mean_size, 1),
        "duplicates": args.duplicates,
        "entities": args.entities,
        "partitions": args.partitions,
        "latency_events": args.latency_events,
        "latency_rate": args.latency_rate,
        "half_rate": args.half_rate,
        "profiled": [n for n in args.profile.split(",") if n],
        "seed": args.seed,
        "systems": names,
        "order_schema": schema_source,
        "order_subject": order_subject,
        "order_schema_id": order_id,
        "status_schema_id": status_id,
        "bootstrap": bootstrap,
        "broker_core": measure.BROKER_CORE,
        "app_core": measure.APP_CORE,
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
        "versions": {spec.name: _versions(spec) for spec in specs},
        "variants": {s.name: s.env["BENCH_STREAMS_TUNING"] for s in specs if "BENCH_STREAMS_TUNING" in s.env},
    }
    rows: list[dict[str, Any]] = []
    details: list[Any] = []
    print(
        f"run {run_id}: {args.events} events of ~{mean_size:.0f} B, "
        f"{args.duplicates:.0%} duplicates, {args.entities} entities, "
        f"{args.partitions} partitions; schema {schema_source} (id {order_id})",
        flush=True,
    )
    try:
        with measure.pinned(_broker_pid(args.broker_pid)):
            for spec in specs:
                row, detail = _run_one(spec, args, bootstrap, registry, run_id, status_id,
                                       backlog, tail, work, logs)  # fmt: skip
                rows.append(row)
                details.append(detail)
                print(f"  {spec.name}: {row} {detail.get('note', '')}", flush=True)
    finally:
        if not args.keep_topics:
            generate.delete_topics_containing(bootstrap, topic_marker)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(report.table(rows))
    path = report.write(run_id, parameters, rows, details)
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return 0 if all(d["ok"] or d["note"] == "not implemented" for d in details) else 1


def _run_one(
    spec: systems.SystemSpec,
    args: argparse.Namespace,
    bootstrap: str,
    registry: str,
    run_id: str,
    status_id: int,
    backlog: list[generate.Event],
    tail: list[generate.Event],
    work: Path,
    logs: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    slug = spec.name.replace("-", "_")
    source_topic = f"bench.{run_id}.{slug}.orders"
    status_topic = f"bench.{run_id}.{slug}.status"
    generate.create_topics(bootstrap, [source_topic, status_topic], args.partitions)
    generate.produce_all(bootstrap, source_topic, backlog)
    state_dir = work / slug
    state_dir.mkdir(parents=True, exist_ok=True)
    marker = work / f"{slug}.first"
    env = SystemEnv(
        bootstrap=bootstrap,
        registry_url=registry,
        state_dir=str(state_dir),
        source_topic=source_topic,
        status_topic=status_topic,
        group=f"bench.{run_id}.{slug}",
        partitions=args.partitions,
        status_schema_id=status_id,
        first_record_file=str(marker),
    )
    obs = measure.run_system(
        spec.command(),
        {**env.to_env(), **spec.env},
        bootstrap=bootstrap,
        status_topic=status_topic,
        source_topic=source_topic,
        partitions=args.partitions,
        events=args.events,
        tail=tail,
        latency_rate=args.latency_rate,
        marker=marker,
        log=logs / f"{slug}.log",
        timeout_s=args.timeout,
        half_rate=args.half_rate,
        profile=logs / f"{slug}.pyspy.txt" if spec.name in args.profile.split(",") else None,
    )
    statuses: list[measure.StatusRecord] = []
    if obs.ok:
        statuses = measure.read_statuses(bootstrap, registry, status_topic, args.partitions)
    row, detail = report.make_row(spec.name, args.events, obs, statuses)
    if spec.name in args.profile.split(","):
        from bench.pipeline.profile import render

        detail["note"] = (detail["note"] + " profiled (py-spy overhead in the figures)").strip()
        spy = logs / f"{slug}.pyspy.txt"
        if spy.exists():
            print(render(spy, 15), flush=True)
    return row, detail
