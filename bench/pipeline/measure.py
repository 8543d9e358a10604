"""Run one system as a pinned subprocess and measure it.

Definitions (what the numbers in a row mean):

- events_per_s: N / (t_last - t_first), where t_first is the wall-clock time of the
  subprocess's first consumed record (it writes it to BENCH_FIRST_RECORD_FILE; a system
  that does not falls back to the first status event's timestamp) and t_last is the
  log-append timestamp of the N-th status event. Startup (imports, group join, topic
  and state set-up) is excluded; the backlog of N events is drained at full speed.
- cpu_s_per_million: user+system CPU seconds of the subprocess and its children
  (/proc/<pid>/stat utime+stime+cutime+cstime, summed over the process tree) from the
  first record (the system's own os.times() written in its marker file, else the harness's
  /proc sample when it sees the marker or the first status) to when the harness counts N
  statuses (the system is idle by then), per 1e6 events. Startup CPU is excluded; the
  details in the JSON keep the total (cpu_s_total, up to the end of the latency tail).
- p50_ms / p99_ms: end-to-end latency under a steady load, measured *after* the backlog
  is drained: the harness produces `latency_events` more events paced at `latency_rate`
  per second and, for each, takes status log-append time minus source log-append time
  (both topics use LogAppendTime, so both ends are on the broker's clock). The backlog is
  not used: its latency would only measure how long it waited in the topic.
- peak_rss_mb: the sum of VmHWM over the process tree at the end of the run.
- max rate and latency at half of it (`--half-rate`): the backlog rate is the system's
  max throughput; the harness can pace the latency tail at half of that rate (measured
  in the same run) instead of a fixed `--latency-rate`.

With `profile=PATH`, py-spy samples the system (`--nonblocking`, 100 Hz, native frames
off) from its first record until the backlog is drained and writes collapsed stacks
("frame;frame;frame count" lines) to PATH; a profiled run's figures carry py-spy's
overhead and are not for the table.

The broker is pinned to core 0 (all its threads) for the whole run, the harness itself
runs on core 0, and every system runs under `taskset -c 1`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.pipeline.generate import Event
from bench.pipeline.wire import RAW_SOURCE_HEADER, WriterSchemas, schema_id_of

CLK_TCK = os.sysconf("SC_CLK_TCK")
APP_CORE = "1"
BROKER_CORE = "0"
NOT_IMPLEMENTED = 3


@contextmanager
def pinned(broker_pid: int | None) -> Iterator[None]:
    """Pin the broker (all threads) and this process to core 0; always restore both."""
    own = os.sched_getaffinity(0)
    broker_cpus: set[int] | None = None
    try:
        if broker_pid is not None:
            broker_cpus = os.sched_getaffinity(broker_pid)
            _taskset_all(broker_pid, BROKER_CORE)
        os.sched_setaffinity(0, {int(BROKER_CORE)})
        yield
    finally:
        os.sched_setaffinity(0, own)
        if broker_pid is not None and broker_cpus is not None:
            _taskset_all(broker_pid, ",".join(str(c) for c in sorted(broker_cpus)))


def _taskset_all(pid: int, cpus: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, stdout=subprocess.DEVNULL)


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (from /proc/*/stat parent IDs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    total_kb = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024.0


class StatusCounter:
    """Counts records in a topic from its partitions' watermarks."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watch"})
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]

    def count(self) -> int:
        total = 0
        for tp in self.tps:
            low, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            total += high - low
        return total

    def close(self) -> None:
        self.consumer.close()


@dataclass
class StatusRecord:
    timestamp_ms: int
    source: tuple[int, int] | None
    outcome: str | None


def read_statuses(bootstrap: str, registry_url: str, topic: str, partitions: int) -> list[StatusRecord]:
    """Every record of the status topic with its timestamp and source coordinates."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-read", "enable.auto.commit": False}
    )
    schemas = WriterSchemas(registry_url)
    ends = {}
    tps = []
    total = 0
    for p in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = high
            total += high - low
            tps.append(TopicPartition(topic, p, low))
    consumer.assign(tps)
    out: list[StatusRecord] = []
    deadline = time.monotonic() + 120 + total / 5000
    while ends and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 1.0):
            if msg.error():
                continue
            out.append(_status_record(msg, schemas))
            partition: int = msg.partition()  # type: ignore[assignment]
            offset: int = msg.offset()  # type: ignore[assignment]
            if offset + 1 >= ends.get(partition, 0):
                ends.pop(partition, None)
    consumer.close()
    return out


def _status_record(msg: Any, schemas: WriterSchemas) -> StatusRecord:
    ts = msg.timestamp()[1]
    for name, value in msg.headers() or []:
        if name == RAW_SOURCE_HEADER:
            p, o = value.decode().split(":")
            return StatusRecord(ts, (int(p), int(o)), None)
    try:
        value = msg.value()
        schema_id_of(value)
        rec = schemas.decode(value)
        return StatusRecord(
            ts, (int(rec["source_partition"]), int(rec["source_offset"])), str(rec["outcome"])
        )
    except Exception:  # an unreadable status just has no join key
        return StatusRecord(ts, None, None)


@dataclass
class Observation:
    """What the harness saw while one system ran."""

    ok: bool
    note: str = ""
    first_record_ms: float | None = None
    cpu_start: float = 0.0
    cpu_drained: float = 0.0
    cpu_total: float = 0.0
    peak_rss_mb: float = 0.0
    startup_s: float = 0.0
    tail_sources: dict[tuple[int, int], int] = field(default_factory=dict)
    tail_rate: float = 0.0


def _read_marker(path: Path) -> tuple[float, float | None] | None:
    """(epoch ms, the system's own CPU seconds or None) of its first record, if written."""
    try:
        fields = path.read_text().split()
        return float(fields[0]), float(fields[1]) if len(fields) > 1 else None
    except (OSError, ValueError, IndexError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def produce_paced(bootstrap: str, topic: str, events: list[Event], rate: float) -> dict[tuple[int, int], int]:
    """Produce `events` at `rate`/s; return {(partition, offset): log-append ms}."""
    delivered: dict[tuple[int, int], int] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            delivered[(msg.partition(), msg.offset())] = msg.timestamp()[1]

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    start = time.monotonic()
    for i, (key, value) in enumerate(events):
        # poll() returns early whenever it serves a delivery report: wait out the rest.
        while (delay := start + i / rate - time.monotonic()) > 0:
            producer.poll(delay)
        producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        producer.poll(0)
    producer.flush(30)
    return delivered


def run_system(
    command: list[str],
    env: dict[str, str],
    *,
    bootstrap: str,
    status_topic: str,
    source_topic: str,
    partitions: int,
    events: int,
    tail: list[Event],
    latency_rate: float,
    marker: Path,
    log: Path,
    timeout_s: float,
    half_rate: bool = False,
    profile: Path | None = None,
) -> Observation:
    """Launch `command` on the app core, wait for the backlog, then the paced tail.

    With `half_rate`, the tail is paced at half the backlog's events/s (never above
    `latency_rate`, which is then a cap).
    """
    counter = StatusCounter(bootstrap, status_topic, partitions)
    counter.count()  # connect and fetch metadata now, not while the system runs
    full_env = {**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with log.open("wb") as log_fh:
        t_launch = time.monotonic()
        proc = subprocess.Popen(
            ["taskset", "-c", APP_CORE, *command],
            env=full_env,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        obs = Observation(ok=False)
        try:
            obs = _watch(proc, counter, obs, events, marker, timeout_s, t_launch, profile)
            if obs.ok and tail:
                rate = latency_rate
                if half_rate:
                    backlog_rate = drained_rate(bootstrap, status_topic, partitions, events, obs)
                    if backlog_rate:
                        rate = min(latency_rate, backlog_rate / 2)
                obs.tail_rate = rate
                obs.tail_sources = produce_paced(bootstrap, source_topic, tail, rate)
                if not _wait_count(proc, counter, events + len(tail), timeout_s):
                    obs.ok, obs.note = False, "timed out on the latency tail"
            if proc.poll() is None:
                obs.cpu_total = cpu_seconds(proc.pid)
                obs.peak_rss_mb = peak_rss_mb(proc.pid)
        finally:
            _stop(proc)
            counter.close()
    return obs


def _watch(
    proc: subprocess.Popen[bytes],
    counter: StatusCounter,
    obs: Observation,
    events: int,
    marker: Path,
    timeout_s: float,
    t_launch: float,
    profile: Path | None = None,
) -> Observation:
    deadline = time.monotonic() + timeout_s
    spy_box: list[subprocess.Popen[bytes] | None] = [None]
    try:
        return _watch_loop(proc, counter, obs, events, marker, deadline, t_launch, profile, spy_box)
    finally:
        if spy_box[0] is not None:
            _stop_spy(spy_box[0])


def _watch_loop(
    proc: subprocess.Popen[bytes],
    counter: StatusCounter,
    obs: Observation,
    events: int,
    marker: Path,
    deadline: float,
    t_launch: float,
    profile: Path | None,
    spy_box: list[subprocess.Popen[bytes] | None],
) -> Observation:
    started = False
    last_count = -1.0
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            obs.note = "not implemented" if rc == NOT_IMPLEMENTED else f"exited with {rc}"
            return obs
        if not started:
            seen = _read_marker(marker)
            if seen is not None:
                started = True
                obs.first_record_ms, own_cpu = seen
                obs.cpu_start = cpu_seconds(proc.pid) if own_cpu is None else own_cpu
                obs.startup_s = time.monotonic() - t_launch
                if profile is not None:
                    spy_box[0] = _start_spy(proc.pid, profile)
        now = time.monotonic()
        if now - last_count >= 0.1:
            last_count = now
            count = counter.count()
            if not started and count > 0:
                started = True
                obs.cpu_start = cpu_seconds(proc.pid)
                obs.startup_s = time.monotonic() - t_launch
            if count >= events:
                obs.cpu_drained = cpu_seconds(proc.pid)
                obs.ok = True
                return obs
        time.sleep(0.01 if not started else 0.05)
    obs.note = "timed out on the backlog"
    return obs


def _start_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling `pid` (and its children) into collapsed stacks at `out`, on core 0."""
    return subprocess.Popen(
        ["taskset", "-c", BROKER_CORE, str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--nonblocking",
         "--rate", "100", "--format", "raw", "--output", str(out), "--subprocesses"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _stop_spy(spy: subprocess.Popen[bytes]) -> None:
    """Stop py-spy with SIGINT, which makes it write its output."""
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


def drained_rate(
    bootstrap: str, status_topic: str, partitions: int, events: int, obs: Observation
) -> float | None:
    """The backlog's events/s as the row will report it (from the N-th status's timestamp)."""
    if obs.first_record_ms is None:
        return None
    last = nth_status_ms(bootstrap, status_topic, partitions, events)
    if last is None or last <= obs.first_record_ms:
        return None
    return events / ((last - obs.first_record_ms) / 1000.0)


def nth_status_ms(bootstrap: str, topic: str, partitions: int, n: int) -> int | None:
    """The log-append time of the n-th record (in time order) of `topic`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-rate", "enable.auto.commit": False}
    )
    try:
        tps, ends = [], {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                tps.append(TopicPartition(topic, p, low))
        consumer.assign(tps)
        stamps: list[int] = []
        deadline = time.monotonic() + 60 + n / 10000
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 1.0):
                if msg.error():
                    continue
                stamps.append(msg.timestamp()[1])
                partition: int = msg.partition()  # type: ignore[assignment]
                offset: int = msg.offset()  # type: ignore[assignment]
                if offset + 1 >= ends.get(partition, 0):
                    ends.pop(partition, None)
        stamps.sort()
        return stamps[n - 1] if len(stamps) >= n else None
    finally:
        consumer.close()


def _wait_count(proc: subprocess.Popen[bytes], counter: StatusCounter, target: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if counter.count() >= target:
            return True
        time.sleep(0.1)
    return False
