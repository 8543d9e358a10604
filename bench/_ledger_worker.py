"""The worker process of `python -m bench memory` and `python -m bench recovery`.

Run by those harnesses as `python -m bench._ledger_worker`.

A real streams worker (`streams.worker.build_runtime` + `make_worker`: faust app, the
handler's ledger Table on RocksDB through rocksdict, its compacted changelog on the
broker) for an app with one no-op handler on an empty source topic, plus one faust task
that does the benchmark's work inside it and writes JSON lines to BENCH_OUT:

- BENCH_LEDGER_MODE=memory: once the worker is ready (partitions assigned, tables
  recovered), write BENCH_ENTITIES distinct entity IDs through `Ledger.record` (one
  COMPLETED entry each, as a handler's success writes it; every write goes to RocksDB
  and to the changelog, whose producer buffer is let drain every 1,000 writes), with
  a sample {entities, rss_mb, hwm_mb, disk_mb, cpu_s, t_s} every BENCH_SAMPLE_EVERY
  entities. Then the retention sweep (`Ledger.sweep` with the clock moved past the
  retention: every entry expires) and samples after it, after RocksDB flushed its
  memtables, and after a manual full compaction (RocksDB compacts on its own schedule;
  this shows where the disk use goes once it has).
- BENCH_LEDGER_MODE=recovery: write {"phase": "recovered", ...} once faust's table
  recovery has completed, with the time since the process started and since the first
  partition assignment, and the number of entries in the local RocksDB partitions.

Either way the process then stops itself with SIGTERM (a graceful faust shutdown).
BENCH_ROCKSDB_OPTIONS (JSON, optional) overrides faust's RocksDB options of the ledger
(`block_cache_size`, `write_buffer_size`, `max_write_buffer_number`, ...), as
`Table(options=...)` in the runtime would.
Environment: the `SystemEnv` variables of the pipeline bench (bootstrap, registry,
state dir, source topic, group = app name, partitions) plus the ones above.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench.pipeline.wire import SystemEnv
from streams import App, EventContext, Handlers
from streams.config import Settings
from streams.ledger import _PartitionEvent
from streams.local.processes import free_port
from streams.runtime import Runtime
from streams.worker import build_runtime, make_worker

T_START = time.monotonic()
HANDLER = "bench"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def disk_bytes(paths: list[Path]) -> int:
    total = 0
    for root in paths:
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    total += os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue
    return total


class Out:
    def __init__(self, path: str) -> None:
        self.fh = open(path, "a", buffering=1)  # noqa: SIM115 - one line per sample, kept open

    def write(self, **fields: Any) -> None:
        self.fh.write(json.dumps(fields) + "\n")


def app_and_settings(env: SystemEnv) -> tuple[App, Settings]:
    """The benchmark's app (one no-op handler on the source topic) and its settings."""
    handlers = Handlers()

    @handlers.event(env.source_topic, name=HANDLER, schema="orders.created")
    async def noop(event: dict[str, Any], ctx: EventContext) -> None:
        """Never called: the source topic stays empty."""

    settings = dataclasses.replace(
        Settings.from_env(),
        status_topic=env.status_topic,
        partitions=env.partitions,
        web_port=free_port(),
        workspace="",
    )
    # A week: the periodic sweep (every retention/10) stays out of the measurement.
    return App(env.group, handlers, retention_s=7 * 24 * 3600.0), settings


def build(env: SystemEnv) -> Runtime:
    runtime = build_runtime(*app_and_settings(env))
    # An experiment, as the runtime would do with Table(options={...}): RocksDB settings
    # of the ledger's partition DBs (faust's RocksDBOptions attributes), set before any opens.
    store: Any = runtime.handlers[HANDLER].ledger.table.data
    for key, value in json.loads(os.environ.get("BENCH_ROCKSDB_OPTIONS") or "{}").items():
        setattr(store.rocksdb_options, key, value)
    return runtime


async def _ready(runtime: Runtime) -> None:
    while not runtime.readiness()[0]:
        await asyncio.sleep(0.05)


def _ledger_paths(runtime: Runtime) -> list[Path]:
    store: Any = runtime.handlers[HANDLER].ledger.table.data
    return [Path(store.partition_path(p)) for p in range(runtime.handlers[HANDLER].partitions)]


def _sample(out: Out, runtime: Runtime, phase: str, entities: int, t0: float, **extra: Any) -> None:
    out.write(
        phase=phase,
        entities=entities,
        t_s=round(time.monotonic() - t0, 2),
        rss_mb=round(_status_kb("VmRSS") / 1024, 1),
        hwm_mb=round(_status_kb("VmHWM") / 1024, 1),
        disk_mb=round(disk_bytes(_ledger_paths(runtime)) / 2**20, 1),
        cpu_s=round(_cpu_s(), 2),
        **rocksdb_memory(runtime),
        **extra,
    )


#: RocksDB's own accounting, summed over the ledger's partition DBs (MB).
ROCKSDB_MEMORY = {
    "memtables_mb": "rocksdb.cur-size-all-mem-tables",
    "block_cache_mb": "rocksdb.block-cache-usage",
    "table_readers_mb": "rocksdb.estimate-table-readers-mem",
}


def rocksdb_memory(runtime: Runtime) -> dict[str, float]:
    dbs: dict[int, Any] = getattr(runtime.handlers[HANDLER].ledger.table.data, "_dbs", {})
    out: dict[str, float] = {}
    for name, prop in ROCKSDB_MEMORY.items():
        total = 0
        for db in dbs.values():
            try:
                total += int(db.property_int_value(prop) or 0)
            except Exception:  # a closed partition
                continue
        out[name] = round(total / 2**20, 1)
    return out


async def memory(runtime: Runtime, out: Out, entities: int, sample_every: int) -> None:
    await _ready(runtime)
    h = runtime.handlers[HANDLER]
    ledger, parts = h.ledger, h.partitions
    buffer = runtime.faust.producer.buffer
    events = [_PartitionEvent(h.source_name, p) for p in range(parts)]
    t0 = time.monotonic()
    _sample(out, runtime, "start", 0, t0)
    base_ms = int(time.time() * 1000)
    for i in range(entities):
        p = i % parts
        event_id = str(uuid.UUID(int=i, version=4))
        ledger.record(
            events[p],  # type: ignore[arg-type]
            f"entity-{i:010d}",
            event_id,
            "COMPLETED",
            event_id,
            attempts=1,
            now_ms=base_ms + i // 1000,
            delivery=f"{h.source_name}/{p}/{i // parts}",
        )
        if i % 1000 == 999:
            while buffer.size > 2000:  # the changelog producer keeps up, as in a worker
                await asyncio.sleep(0.001)
            await asyncio.sleep(0)
        if (i + 1) % sample_every == 0:
            _sample(out, runtime, "write", i + 1, t0)
    await buffer.flush()
    _sample(out, runtime, "written", entities, t0)
    t_sweep = time.monotonic()
    now = base_ms + entities // 1000 + ledger.retention_ms + 1000
    pruned = deleted = 0
    for p in range(parts):  # one partition at a time, to sample in between
        pr, de = await ledger.sweep({p}, h.source_name, now_ms=now)
        pruned, deleted = pruned + pr, deleted + de
        _sample(out, runtime, f"sweep p{p}", entities, t0, deleted=deleted)
    await buffer.flush()
    _sample(
        out, runtime, "swept", entities, t0, sweep_s=round(time.monotonic() - t_sweep, 2),
        pruned=pruned, deleted=deleted,
    )  # fmt: skip
    dbs: dict[int, Any] = ledger.table.data._dbs  # type: ignore[attr-defined]
    for db in dbs.values():
        db.flush()
    _sample(out, runtime, "flushed", entities, t0, entries=ledger.approximate_size())
    t_compact = time.monotonic()
    for db in dbs.values():
        db.compact_range(None, None)
    _sample(
        out, runtime, "compacted", entities, t0, compact_s=round(time.monotonic() - t_compact, 2),
        entries=ledger.approximate_size(),
    )  # fmt: skip


async def recovery(runtime: Runtime, out: Out, t_assigned: list[float]) -> None:
    recovered = runtime.faust.tables.recovery.completed  # type: ignore[attr-defined]
    await recovered.wait()
    t_done = time.monotonic()
    ledger = runtime.handlers[HANDLER].ledger
    dbs: dict[int, Any] = ledger.table.data._dbs  # type: ignore[attr-defined]
    keys = (k for db in dbs.values() for k in db.keys())  # noqa: SIM118 - an Rdict is not iterable
    count = sum(1 for k in keys if not bytes(k).startswith(b"__faust"))
    out.write(
        phase="recovered",
        since_start_s=round(t_done - T_START, 2),
        since_assigned_s=round(t_done - t_assigned[0], 2) if t_assigned else None,
        entries=count,
        rss_mb=round(_status_kb("VmRSS") / 1024, 1),
        hwm_mb=round(_status_kb("VmHWM") / 1024, 1),
        cpu_s=round(_cpu_s(), 2),
        disk_mb=round(disk_bytes(_ledger_paths(runtime)) / 2**20, 1),
    )


def main() -> None:
    env = SystemEnv.from_env()
    out = Out(os.environ["BENCH_OUT"])
    mode = os.environ["BENCH_LEDGER_MODE"]
    runtime = build(env)
    t_assigned: list[float] = []

    @runtime.faust.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: Any, *args: Any, **kwargs: Any) -> None:
        if not t_assigned:
            t_assigned.append(time.monotonic())

    @runtime.faust.task  # type: ignore[untyped-decorator]
    async def bench_task() -> None:
        try:
            if mode == "memory":
                await memory(
                    runtime,
                    out,
                    int(os.environ["BENCH_ENTITIES"]),
                    int(os.environ.get("BENCH_SAMPLE_EVERY", "100000")),
                )
            else:
                await recovery(runtime, out, t_assigned)
            out.write(phase="done")
        except Exception as exc:  # the harness must hear of it
            out.write(phase="error", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    make_worker(runtime, "warning").execute_from_commandline()


if __name__ == "__main__":
    main()
