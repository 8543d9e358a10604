"""Helpers for the chaos scenarios (tests/chaos): workload, partner, private stacks, invariants.

A scenario publishes a mixed workload (unique order events, exact duplicates, poison
records), runs real workers against a real broker and registry, injects faults, and then
calls `check_invariants`, which waits (with deadlines) for the end state and asserts:

- every valid unique event completed at the partner (counted by idempotency key), none
  lost; re-sent keys (a 2xx answer twice for one key) are zero unless a worker was
  SIGKILLed, and then each re-sent key must have been in flight at a kill (see
  `InFlight`);
- every poison record is in the DLQ with its key and value bytes intact, and nothing else
  is (no valid event dead-lettered);
- exactly one terminal status per delivery: every record of the source and retry topics
  has a terminal status (`SUCCEEDED`, `SKIPPED_DUPLICATE`, `FAILED`, `DEAD_LETTERED`) for
  its (topic, partition, offset), and all of that delivery's terminal statuses agree on
  outcome, event ID and idempotency key. Copies of one terminal status (a record
  redelivered after a SIGKILL or a rebalance re-emits it, with new timings and a new
  status_id) are counted and reported, as are copies of a dead letter;
- the consumer group's committed offsets reach the high watermarks (lag 0) within a bound;
- every worker still running.

The figures of each run are printed and, if `STREAMS_CHAOS_RESULTS` names a file,
appended to it as a JSON line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams import topics as topic_admin
from streams.app import App
from streams.config import Settings
from streams.kafka_probe import quiet_logger
from streams.local import processes
from streams.local.processes import free_port
from streams.local.stack import LocalStack, StackInfo
from streams.outcomes import H_REASON
from streams.publish import Publisher
from tests.harness import Proc, StatusReader, TopicReader, WorkerProc, wait_for

REPO = Path(__file__).resolve().parents[1]
CHAOS_APP = "tests.chaos.apps.chaos_app:app"
TERMINAL = frozenset({"SUCCEEDED", "SKIPPED_DUPLICATE", "FAILED", "DEAD_LETTERED"})
# faust's defaults (60 s session) would leave a SIGKILLed worker's partitions idle for a
# minute per kill; 10 s keeps five kills inside the scenario's time bound. (faust reads
# these from the environment; a value the runtime passes to faust.App explicitly wins.)
WORKER_ENV = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


# -- sizing ---------------------------------------------------------------------------------


def full_scale(param: str) -> bool:
    """True for the hand-run size: the `full` parametrisation or STREAMS_CHAOS_SCALE=full."""
    return param == "full" or os.environ.get("STREAMS_CHAOS_SCALE") == "full"


# -- the partner --------------------------------------------------------------------------


class ChaosPartner(Proc):
    """`tests.chaos.partner` on a free port: counts completions, fails on demand."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "tests.chaos.partner", "--port", str(self.port)]
        super().__init__(argv, {**os.environ, "PYTHONPATH": str(REPO)}, log)
        self.url = f"http://127.0.0.1:{self.port}"
        self._http = httpx.Client(base_url=self.url, timeout=30)
        wait_for(self._up, 30, "the chaos partner API")

    def _up(self) -> bool:
        assert self.alive(), f"partner died; see {self.log}"
        try:
            return self._http.get("/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stats(self) -> dict[str, Any]:
        return dict(self._http.get("/_stats").json())

    def completed_keys(self) -> int:
        return int(self.stats()["completed_keys"])

    def completed(self) -> dict[str, int]:
        return dict(self._http.get("/_completed").json())

    def first_ok(self) -> dict[str, float]:
        return dict(self._http.get("/_first").json())

    def outage(self, seconds: float, mode: str = "mixed", hang_s: float = 8.0) -> int:
        """Start an outage; returns the completed keys counted when it began."""
        body = {"outage": {"seconds": seconds, "mode": mode, "hang_s": hang_s}}
        response = self._http.post("/_control", json=body)
        response.raise_for_status()
        return int(response.json()["completed_keys"])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> None:
        self._http.close()
        super().stop(sig, timeout_s)


@contextmanager
def chaos_partner(tmp: Path) -> Iterator[ChaosPartner]:
    partner = ChaosPartner(tmp / "partner.log")
    try:
        yield partner
    finally:
        partner.stop()


# -- settings, topics, workers ----------------------------------------------------------------


def chaos_settings(
    bootstrap: str, registry_url: str, workspace: str, partitions: int = 3, replication_factor: int = 1
) -> Settings:
    return dataclasses.replace(
        Settings.from_env({}),
        kafka_bootstrap=bootstrap,
        schema_registry_url=registry_url,
        workspace=workspace,
        partitions=partitions,
        replication_factor=replication_factor,
    )


def create_topics(app: App, settings: Settings) -> None:
    """Every topic of the app, before anything is produced (auto-created ones get 1 partition)."""
    assert settings.kafka_bootstrap
    topic_admin.create(topic_admin.admin(settings.kafka_bootstrap), topic_admin.declared(app, settings))


class Workers:
    """The scenario's worker processes; each is stopped by its PID at the end."""

    def __init__(self, settings: Settings, tmp: Path, partner_url: str, app: str = CHAOS_APP) -> None:
        self.settings = settings
        self.tmp = tmp
        self.partner_url = partner_url
        self.app = app
        self.live: dict[str, WorkerProc] = {}
        self.all: list[WorkerProc] = []
        self.crashed: list[str] = []
        self._starts: Counter[str] = Counter()

    def start(self, name: str) -> WorkerProc:
        """Start (or restart) worker `name`; it keeps its state directory across restarts."""
        self._starts[name] += 1
        env = {
            **WORKER_ENV,
            "STREAMS_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap or "",
            "STREAMS_SCHEMA_REGISTRY_URL": self.settings.schema_registry_url or "",
            "STREAMS_PARTITIONS": str(self.settings.partitions),
            "STREAMS_REPLICATION_FACTOR": str(self.settings.replication_factor),
        }
        log = self.tmp / f"{name}.{self._starts[name]}.log"
        worker = WorkerProc(
            self.app, self.settings.workspace, self.tmp / f"state-{name}", self.partner_url, log, env
        )
        self.live[name] = worker
        self.all.append(worker)
        return worker

    def kill(self, name: str) -> None:
        self.live.pop(name).kill()

    def stop(self, name: str) -> None:
        self.live.pop(name).stop()

    def assert_alive(self) -> None:
        dead = [f"{n} (log {w.log})" for n, w in self.live.items() if not w.alive()]
        assert not dead, f"worker(s) crashed: {dead}"

    def wait_ready(self, timeout_s: float = 120) -> None:
        wait_for(lambda: all(w.ready() for w in self.live.values()), timeout_s, "workers ready")

    def close(self) -> None:
        for worker in self.all:
            worker.stop()


# -- the workload ---------------------------------------------------------------------------

POISON_KINDS = (
    "random",
    "wrong-magic",
    "unknown-id",
    "truncated",
    "trailing",
    "short",
    "empty",
    "tombstone",
)


@dataclass
class Workload:
    """Pre-encoded records: unique events, exact duplicates of them, and poison.

    `records` is the publish order: (key, value) pairs; `wanted` the partner idempotency
    keys of the valid events; `poison` the poison records' key -> value (None: a tombstone).
    """

    records: list[tuple[bytes, bytes | None]]
    wanted: set[str]
    poison: dict[bytes, bytes | None]
    uniques: int
    duplicates: int

    @classmethod
    def build(
        cls,
        publisher: Publisher,
        events: int,
        duplicate_share: float = 0.2,
        poison_share: float = 0.01,
        seed: int = 1,
        prefix: str = "order",
        poison_kinds: Sequence[str] = POISON_KINDS,
    ) -> Workload:
        rng = random.Random(seed)
        n_poison = round(events * poison_share)
        n_dup = round(events * duplicate_share)
        n_unique = events - n_poison - n_dup
        uniques: list[tuple[bytes, bytes]] = []
        template: dict[str, Any] | None = None
        for i in range(n_unique):
            entity = f"{prefix}-{i}"
            event = publisher.envelope(
                "orders.created",
                entity,
                {"customer_id": f"c-{i % 977}", "customer_email": "jane@example.com", "total_cents": 100 + i},
            )
            template = template or event
            uniques.append((entity.encode(), publisher.encode("orders.created", event)))
        duplicates = [rng.choice(uniques) for _ in range(n_dup)]
        assert template is not None
        sample = publisher.encode("orders.created", template)
        poison = {
            f"poison-{i}".encode(): poison_value(poison_kinds[i % len(poison_kinds)], sample, rng)
            for i in range(n_poison)
        }
        records: list[tuple[bytes, bytes | None]] = [*uniques, *duplicates, *poison.items()]
        rng.shuffle(records)
        return cls(
            records=records,
            wanted={f"order:{k.decode()}" for k, _ in uniques},
            poison=poison,
            uniques=n_unique,
            duplicates=n_dup,
        )


def poison_value(kind: str, valid: bytes, rng: random.Random) -> bytes | None:
    """A value the decoder must refuse, of the given kind, made from a valid frame."""
    if kind == "random":
        return rng.randbytes(rng.randint(6, 80))
    if kind == "wrong-magic":
        return bytes([rng.randint(1, 255)]) + valid[1:]
    if kind == "unknown-id":
        return b"\x00" + struct.pack(">I", rng.randint(2_000_000_000, 2**32 - 1)) + valid[5:]
    if kind == "truncated":
        return valid[: rng.randint(6, len(valid) - 1)]
    if kind == "trailing":
        return valid + rng.randbytes(rng.randint(1, 16))
    if kind == "short":
        return valid[: rng.randint(1, 4)]
    if kind == "empty":
        return b""
    if kind == "tombstone":
        return None
    raise ValueError(kind)


def fast_producer(bootstrap: str) -> Producer:
    """Idempotent, acks=all, the Java/aiokafka partitioner: what `Publisher` uses, without encoding."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 200_000,
            "logger": quiet_logger(),  # connection chatter while a broker is down; errors still count
        }
    )


class Feeder:
    """Produces records from a thread, at a rate (events/s) or as fast as possible (rate 0).

    Through broker faults too: the idempotent producer retries until the broker acks.
    """

    def __init__(
        self, bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes | None]], rate: float
    ):
        self.topic = topic
        self.records = records
        self.rate = rate
        self.sent = 0
        self.errors: list[str] = []
        self.error: BaseException | None = None
        self._producer = fast_producer(bootstrap)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def _run(self) -> None:
        try:
            started = time.monotonic()
            for i, (key, value) in enumerate(self.records):
                if self.rate:
                    delay = started + i / self.rate - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                while True:
                    try:
                        self._producer.produce(
                            self.topic, key=key, value=value, on_delivery=self._on_delivery
                        )
                        break
                    except BufferError:  # local queue full: let it drain
                        self._producer.poll(0.1)
                self._producer.poll(0)
                self.sent = i + 1
            left = self._producer.flush(300)
            if left:
                self.errors.append(f"{left} records not delivered")
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout_s: float = 600) -> int:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the feeder did not finish"
        assert self.error is None, f"producing failed: {self.error}"
        assert not self.errors, f"{len(self.errors)} records not delivered: {self.errors[:3]}"
        return self.sent

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


# -- the consumer group --------------------------------------------------------------------


def _probe(bootstrap: str, group: str = "") -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"chaos-probe-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )


def partitions_of(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    consumer = _probe(bootstrap)
    try:
        metadata = consumer.list_topics(timeout=10)
        parts: list[TopicPartition] = []
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is not None and meta.error is None:
                parts.extend(TopicPartition(topic, p) for p in sorted(meta.partitions))
        return parts
    finally:
        consumer.close()


def watermarks(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    consumer = _probe(bootstrap)
    try:
        return {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)
            for tp in partitions_of(bootstrap, topics)
        }
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The group's committed offsets (0 where none), read without joining the group."""
    consumer = _probe(bootstrap, group)
    try:
        parts = partitions_of(bootstrap, topics)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topics: Sequence[str]) -> int:
    marks = watermarks(bootstrap, topics)
    done = committed(bootstrap, group, topics)
    return sum(max(0, high - done.get(tp, 0)) for tp, (_, high) in marks.items())


# -- re-send bound ----------------------------------------------------------------------------


@dataclass
class InFlight:
    """What was not committed when a worker was SIGKILLed: the only records that may re-run.

    At each kill we note the time and the group's committed offsets. A key may reach the
    partner twice only if it was completed before that kill (+1 s for a call already on
    the wire) by a delivery at or past the committed offset of its partition then.
    """

    kills: list[tuple[float, dict[tuple[str, int], int]]] = field(default_factory=list)

    def note(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self.kills.append((time.time(), committed(bootstrap, group, topics)))

    def possible_resends(
        self, first_ok: dict[str, float], deliveries: dict[str, list[tuple[str, int, int]]]
    ) -> set[str]:
        keys: set[str] = set()
        for at, offsets in self.kills:
            for key, first in first_ok.items():
                if first > at + 1.0:
                    continue
                if any(o >= offsets.get((t, p), 0) for t, p, o in deliveries.get(key, ())):
                    keys.add(key)
        return keys


# -- invariants -------------------------------------------------------------------------------


@dataclass
class Scenario:
    """What a scenario ran against, for the final checks."""

    name: str
    app: App
    settings: Settings
    registry_url: str
    workload: Workload
    partner: ChaosPartner
    workers: Workers
    faults: dict[str, Any] = field(default_factory=dict)
    sigkills: InFlight | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def bootstrap(self) -> str:
        assert self.settings.kafka_bootstrap
        return self.settings.kafka_bootstrap

    @property
    def group(self) -> str:
        return self.settings.topic(self.app.name)

    @property
    def source(self) -> str:
        return self.settings.topic("orders.created")

    @property
    def consumed_topics(self) -> list[str]:
        return [self.source, f"{self.source}.retry"]


def _read_all(reader: TopicReader, want: int, timeout_s: float, what: str) -> None:
    wait_for(lambda: len(reader.poll(2.0)) >= want, timeout_s, what, 0.0)


def check_invariants(sc: Scenario, complete_within_s: float = 300) -> dict[str, Any]:
    """Wait for the end state, check the invariants, record the figures, then fail on any breach.

    The figures are recorded (printed, and appended to STREAMS_CHAOS_RESULTS) also when an
    invariant is broken, with the breaches listed under "violations".
    """
    wl = sc.workload

    # Statuses, retries and dead letters are acknowledged before an offset commits, so
    # lag 0 on the source and retry topics means every record has had its outcome.
    def lag_zero() -> bool:
        sc.workers.assert_alive()
        return group_lag(sc.bootstrap, sc.group, sc.consumed_topics) == 0

    lag_started = time.monotonic()
    wait_for(lag_zero, complete_within_s, f"group {sc.group} lag back to zero", 1.0)
    lag_s = time.monotonic() - lag_started
    processed_at = time.monotonic()
    completed = sc.partner.completed()
    violations: list[str] = []

    # Every delivery: each record of the source and retry topics (idempotent producers, no
    # transactions, so offsets are contiguous from the low watermark).
    marks = watermarks(sc.bootstrap, sc.consumed_topics)
    deliveries = {(t, p, o) for (t, p), (low, high) in marks.items() for o in range(low, high)}
    retried = sum(1 for t, _, _ in deliveries if t.endswith(".retry"))

    statuses = StatusReader(sc.bootstrap, sc.registry_url, sc.settings.topic(sc.settings.status_topic))
    dlq = TopicReader(sc.bootstrap, f"{sc.source}.dlq")
    terminal: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    try:
        seen = 0

        def every_delivery_ended() -> bool:
            nonlocal seen
            for s in statuses.read()[seen:]:
                if s["outcome"] in TERMINAL:
                    terminal[(s["source_topic"], s["source_partition"], s["source_offset"])].append(s)
            seen = len(statuses.statuses)
            return deliveries <= terminal.keys()

        with contextlib.suppress(AssertionError):  # reported below, with the records
            wait_for(every_delivery_ended, 60, "a terminal status for every delivery", 0.5)
        with contextlib.suppress(AssertionError):
            _read_all(dlq, len(wl.poison), 30, f"{len(wl.poison)} dead letters")
        letters = dlq.messages
        outcome_counts = Counter(s["outcome"] for s in statuses.statuses)
    finally:
        statuses.close()
        dlq.close()

    # Exactly one terminal status per delivery (copies of the same one counted).
    unended = sorted(deliveries - terminal.keys())
    if unended:
        violations.append(
            f"{len(unended)} of {len(deliveries)} deliveries have no terminal status although their "
            f"offsets were committed (lag 0): {describe(sc.bootstrap, unended[:5])}"
        )
    extra = set(terminal) - deliveries
    if extra:
        violations.append(f"statuses for records that are not in the topics: {sorted(extra)[:5]}")
    conflicting = {
        c: sorted({(s["outcome"], s["event_id"], s["idempotency_key"]) for s in ss})
        for c, ss in terminal.items()
        if len({(s["outcome"], s["event_id"], s["idempotency_key"]) for s in ss}) > 1
    }
    if conflicting:
        violations.append(f"deliveries with different terminal statuses: {list(conflicting.items())[:3]}")
    status_copies = sum(len(ss) - 1 for ss in terminal.values())

    # Poison: every one dead-lettered with its bytes intact; nothing valid dead-lettered.
    by_key: dict[bytes, list[Any]] = defaultdict(list)
    for m in letters:
        by_key[m.key()].append(m)
    not_poison = [k for k in by_key if k not in wl.poison]
    if not_poison:
        violations.append(f"{len(not_poison)} valid events dead-lettered: {not_poison[:5]}")
    missing_poison = [k for k in wl.poison if k not in by_key]
    if missing_poison:
        violations.append(f"{len(missing_poison)} poison records not dead-lettered: {missing_poison[:5]}")
    altered = [
        key
        for key, value in wl.poison.items()
        for m in by_key[key]
        if m.value() != value or dict(m.headers() or [])[H_REASON] != b"undecodable"
    ]
    if altered:
        violations.append(f"dead letters with changed bytes or reason: {altered[:5]}")
    dlq_copies = len(letters) - len(by_key)

    # The partner: every unique event completed, none invented; re-sends bounded.
    lost = wl.wanted - set(completed)
    if lost:
        violations.append(f"{len(lost)} events never completed at the partner: {sorted(lost)[:5]}")
    invented = set(completed) - wl.wanted
    if invented:
        violations.append(f"unknown keys completed: {sorted(invented)[:5]}")
    resent = {k for k, n in completed.items() if n > 1}
    bound = 0
    if sc.sigkills is None:
        # Status and dead-letter copies are allowed (and counted): a record redelivered
        # after a rebalance is found COMPLETED in the ledger and its status re-emitted.
        if resent:
            violations.append(f"{len(resent)} keys completed twice without a SIGKILL: {sorted(resent)[:5]}")
    else:
        by_key_deliveries: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
        for (t, p, o), ss in terminal.items():
            by_key_deliveries[ss[0]["idempotency_key"]].append((t, p, o))
        possible = sc.sigkills.possible_resends(sc.partner.first_ok(), by_key_deliveries)
        bound = len(possible)
        outside = resent - possible
        if outside:
            violations.append(
                f"{len(outside)} re-sent keys were not in flight at any kill: {sorted(outside)[:5]}"
            )
    sc.workers.assert_alive()

    stats = sc.partner.stats()
    figures: dict[str, Any] = {
        "scenario": sc.name,
        "events": len(wl.records),
        "unique": wl.uniques,
        "duplicates": wl.duplicates,
        "poison": len(wl.poison),
        "faults": sc.faults,
        "completed_keys": len(completed),
        "lost": len(lost),
        "unended_deliveries": len(unended),
        "resent_keys": len(resent),
        "resend_bound": bound,
        "partner_answers": stats["answers"],
        "deliveries": len(deliveries),
        "retry_topic_deliveries": retried,
        "status_copies": status_copies,
        "dlq_copies": dlq_copies,
        "outcomes": dict(outcome_counts),
        "lag_zero_after_s": round(lag_s, 1),
        "processing_s": round(processed_at - sc.started, 1),
        "total_s": round(time.monotonic() - sc.started, 1),
        "violations": violations,
    }
    record_figures(figures)
    assert not violations, "invariants broken:\n- " + "\n- ".join(violations)
    return figures


def describe(bootstrap: str, coordinates: Sequence[tuple[str, int, int]]) -> list[str]:
    """`topic/partition/offset key=... value=N bytes` of a few records, for failure messages."""
    consumer = _probe(bootstrap)
    out = []
    try:
        for topic, partition, offset in coordinates:
            consumer.assign([TopicPartition(topic, partition, offset)])
            message = consumer.consume(1, timeout=10)
            if message and message[0].error() is None:
                value = message[0].value()
                size = "null" if value is None else f"{len(value)} bytes"
                out.append(f"{topic}/{partition}/{offset} key={message[0].key()!r} value={size}")
            else:
                out.append(f"{topic}/{partition}/{offset} (unreadable)")
    finally:
        consumer.close()
    return out


def record_figures(figures: dict[str, Any]) -> None:
    line = json.dumps(figures, sort_keys=True)
    print(f"\nchaos figures: {line}")
    target = os.environ.get("STREAMS_CHAOS_RESULTS")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


# -- private stacks ---------------------------------------------------------------------------


@contextmanager
def private_stack(state_dir: Path, brokers: int | None = None) -> Iterator[tuple[LocalStack, StackInfo]]:
    """A local stack of our own (never the shared one), stopped by its PIDs at the end."""
    env = {
        "STREAMS_STATE_DIR": str(state_dir),
        "STREAMS_LOCAL_KAFKA_HEAP_MB": os.environ.get("STREAMS_LOCAL_KAFKA_HEAP_MB", "384"),
        "STREAMS_LOCAL_REGISTRY_HEAP_MB": os.environ.get("STREAMS_LOCAL_REGISTRY_HEAP_MB", "256"),
    }
    stack = LocalStack(Settings.from_env(env), brokers=brokers)
    try:
        info, _ = stack.up(timeout_s=240)
        yield stack, info
    finally:
        stack.down()


def stop_registry(stack: LocalStack, info: StackInfo) -> int:
    """SIGTERM the stack's registry (its recorded PID) and wait until it is gone."""
    pid = info.registry_pid
    os.kill(pid, signal.SIGTERM)
    wait_for(
        lambda: not next(s for s in stack.status() if s.name == "registry").running,
        60,
        "the registry stopped",
    )
    return pid


@contextmanager
def _port_check_like_the_servers() -> Iterator[None]:
    """`processes.port_is_free` binding with SO_REUSEADDR, as Kafka and the registry do.

    Works around a bug in streams/local (reported, see test_restart_keeps_the_ports): the
    port check binds *without* SO_REUSEADDR, so right after a server stops, the TIME_WAIT
    sockets its closed connections leave (60 s on Linux) make its port look taken and
    `up()` restarts the server on a *new* port, where no running client will ever look.
    """
    original = processes.port_is_free

    def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
            return True

    processes.port_is_free = port_is_free
    try:
        yield
    finally:
        processes.port_is_free = original


def restart(stack: LocalStack, before: StackInfo) -> StackInfo:
    """Start what is stopped again, on the same ports (so running clients find it)."""
    with _port_check_like_the_servers():
        info, _ = stack.up(timeout_s=180)
    assert (info.bootstrap, info.registry_url) == (before.bootstrap, before.registry_url), (
        f"restarted on other ports: {info.bootstrap} {info.registry_url}"
    )
    return info


def stop_broker(stack: LocalStack, node: int, sig: int = signal.SIGTERM) -> int:
    """Stop broker `node` (by its recorded PID) and wait until it is gone."""
    pid = stack.signal_broker(node, sig)
    wait_for(lambda: stack.broker_pid(node) is None, 90, f"broker {node} stopped")
    return pid


# -- scenario plumbing --------------------------------------------------------------------------

#: Each scenario runs in two sizes: `short` (integration, in CI) and `full` (`-m chaos`, by hand).
SCALES = [
    pytest.param("short", marks=pytest.mark.integration, id="short"),
    pytest.param("full", marks=[pytest.mark.chaos, pytest.mark.timeout(2400)], id="full"),
]


def progress(partner: ChaosPartner, target: int, timeout_s: float, what: str, workers: Workers) -> None:
    """Wait until `target` keys completed at the partner, failing fast if a worker died."""

    def reached() -> bool:
        workers.assert_alive()
        return partner.completed_keys() >= target

    wait_for(reached, timeout_s, what, 0.5)


def publisher_for(app: App, settings: Settings) -> Publisher:
    return Publisher(app, settings)
