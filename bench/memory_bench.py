"""`python -m bench memory`: resident memory and disk of the ledger under many entities.

    python -m bench memory --entities 10000000 --sample-every 250000

One real streams worker (pinned to core 1, the broker to core 0, as in the pipeline
bench) writes `--entities` distinct entity IDs through its ledger (`Ledger.record`:
RocksDB through rocksdict + the compacted changelog on the local broker), sampling its
RSS, peak RSS, the ledger's size on disk and its CPU time every `--sample-every`
entities; then runs the retention sweep with the clock past the retention (so every
entry expires and is deleted, with a changelog tombstone each) and samples again: right
after the sweep, after RocksDB flushed its memtables, after a full manual compaction.
See `bench/_ledger_worker.py` for what runs inside the worker.

Prints the samples as a table and writes bench/results/memory-<run>.json
({"parameters", "samples"}). The run's topics and state directory are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.pipeline import generate, measure, report
from bench.pipeline.run import _broker_pid, _stack
from bench.pipeline.wire import REPO_ROOT, SystemEnv
from streams.runtime import LEDGER_ROCKSDB

COLUMNS = (
    "phase", "entities", "t_s", "rss_mb", "hwm_mb", "memtables_mb", "block_cache_mb", "disk_mb", "cpu_s",
)  # fmt: skip


def run_id_now() -> tuple[str, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ"), now


def run_dirs(run_id: str) -> tuple[Path, Path]:
    """The run's scratch state directory and its log directory, created."""
    work = REPO_ROOT / ".streams" / "bench" / run_id
    logs = report.RESULTS_DIR / "tmp" / run_id
    logs.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return work, logs


def worker_env(
    run_id: str, kind: str, partitions: int, bootstrap: str, registry: str, state_dir: Path
) -> SystemEnv:
    base = f"bench.{run_id}.{kind}"
    return SystemEnv(
        bootstrap=bootstrap,
        registry_url=registry,
        state_dir=str(state_dir),
        source_topic=f"{base}.orders",
        status_topic=f"{base}.status",
        group=base,
        partitions=partitions,
        status_schema_id=0,
        first_record_file="",
    )


def run_worker(
    env: SystemEnv,
    extra: dict[str, str],
    out: Path,
    log: Path,
    timeout_s: float,
    echo: bool = True,
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    """Run `bench._ledger_worker` on the app core until it reports done; its JSON lines.

    With `profile`, py-spy samples the worker from its launch until it reports done.
    """
    full_env = {**os.environ, **env.to_env(), **extra, "BENCH_OUT": str(out), "PYTHONPATH": str(REPO_ROOT)}
    out.unlink(missing_ok=True)
    lines: list[dict[str, Any]] = []
    with log.open("ab") as log_fh:
        proc = subprocess.Popen(
            ["taskset", "-c", measure.APP_CORE, sys.executable, "-m", "bench._ledger_worker"],
            env=full_env,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + timeout_s
        seen = 0
        spy = measure._start_spy(proc.pid, profile) if profile is not None else None
        try:
            while time.monotonic() < deadline:
                if out.exists():
                    text = out.read_text().splitlines()
                    for raw in text[seen:]:
                        line = json.loads(raw)
                        lines.append(line)
                        if echo:
                            print("  " + json.dumps(line), flush=True)
                    seen = len(text)
                if lines and lines[-1].get("phase") in ("done", "error"):
                    break
                if proc.poll() is not None:
                    lines.append({"phase": "error", "error": f"worker exited with {proc.returncode}"})
                    break
                time.sleep(0.5)
            else:
                lines.append({"phase": "error", "error": f"timed out after {timeout_s:g}s"})
            if spy is not None:
                measure._stop_spy(spy)  # before the shutdown
                spy = None
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        finally:
            if spy is not None:
                measure._stop_spy(spy)
            measure._stop(proc)
    return lines


def table(samples: list[dict[str, Any]]) -> str:
    rows = [list(COLUMNS)] + [[str(s.get(c, "")) for c in COLUMNS] for s in samples]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    out = []
    for n, r in enumerate(rows):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write(name: str, payload: dict[str, Any]) -> Path:
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = report.RESULTS_DIR / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.split("\n")[0])
    p.add_argument("--entities", type=int, default=10_000_000)
    p.add_argument("--sample-every", type=int, default=250_000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--timeout", type=float, default=7200.0, help="for the whole run (s)")
    p.add_argument(
        "--rocksdb",
        default="",
        metavar="JSON",
        help="an experiment: faust RocksDB options for the ledger over the runtime's, e.g. "
        '\'{"block_cache_size": 67108864, "write_buffer_size": 16777216}\' (default: the runtime\'s)',
    )
    args = p.parse_args(argv)
    bootstrap, registry = _stack()
    run_id, now = run_id_now()
    work, logs = run_dirs(run_id)
    env = worker_env(run_id, "memory", args.partitions, bootstrap, registry, work / "memory")
    extra = {
        "BENCH_LEDGER_MODE": "memory",
        "BENCH_ENTITIES": str(args.entities),
        "BENCH_SAMPLE_EVERY": str(args.sample_every),
        "BENCH_ROCKSDB_OPTIONS": args.rocksdb,
    }
    print(
        f"run {run_id}: {args.entities:,} entities through one worker's ledger, {args.partitions} partitions"
    )
    try:
        with measure.pinned(_broker_pid(None)):
            samples = run_worker(env, extra, logs / "memory.jsonl", logs / "memory.log", args.timeout)
    finally:
        generate.delete_topics_containing(bootstrap, f"bench.{run_id}")
        shutil.rmtree(work, ignore_errors=True)
    ok = bool(samples) and samples[-1].get("phase") == "done"
    data = [s for s in samples if s.get("phase") not in ("done", "error")]
    print()
    print(table(data))
    parameters = {
        "run_id": run_id,
        "started_at": now.isoformat(),
        "entities": args.entities,
        "sample_every": args.sample_every,
        "partitions": args.partitions,
        "rocksdb_options": json.loads(args.rocksdb) if args.rocksdb else {"runtime": LEDGER_ROCKSDB},
        "bootstrap": bootstrap,
        "app_core": measure.APP_CORE,
        "broker_core": measure.BROKER_CORE,
        "ok": ok,
    }
    path = write(f"memory-{run_id}.json", {"parameters": parameters, "samples": samples})
    print(f"\nwrote {path.relative_to(REPO_ROOT)}")
    return 0 if ok else 1
