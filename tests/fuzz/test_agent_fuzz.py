"""Fuzzing a running agent: bad frames interleaved with valid events, on the real broker.

Bad frames come from the same mutators as the decoder fuzz (random bytes, mutated valid
frames, truncations, huge lengths, wrong and unknown schema IDs, empty values and
tombstones); a mutant that still decodes is not "bad" and is left out (the local codec,
with the worker's reader schema, is the oracle). Checked: the worker never crashes or
stalls, every bad record is dead-lettered with its bytes intact, every valid event
completes once, and the valid events' throughput with poison mixed in stays within a
factor of the clean run's.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from streams.codec import AvroCodec, CodecError
from streams.local.stack import StackInfo
from streams.schema_registry import SchemaRegistryClient
from tests.chaos.apps.chaos_app import app
from tests.chaos_harness import (
    SCALES,
    Feeder,
    Scenario,
    Workers,
    Workload,
    chaos_partner,
    chaos_settings,
    check_invariants,
    create_topics,
    full_scale,
    progress,
    publisher_for,
)
from tests.fuzz.fuzzing import mutate


def bad_frames(
    valid: list[bytes], count: int, codec: AvroCodec, reader: object, seed: int
) -> list[bytes | None]:
    """`count` values the decoder refuses: mutants of valid frames, random bytes, tombstones."""
    rng = random.Random(seed)
    out: list[bytes | None] = []
    while len(out) < count:
        roll = rng.random()
        if roll < 0.05:
            out.append(None)
            continue
        if roll < 0.15:
            candidate = rng.randbytes(rng.randint(0, 64))
        else:
            candidate = rng.choice(valid)
            for _ in range(rng.randint(1, 4)):
                candidate = mutate(candidate, rng)
        try:
            codec.decode(candidate, reader)  # type: ignore[arg-type]
        except CodecError:
            out.append(candidate)
        # a mutant that still decodes is a valid event, not poison: left out
    return out


@pytest.mark.parametrize("scale", SCALES)
def test_agent_dead_letters_fuzzed_frames_and_keeps_its_throughput(
    stack: StackInfo, unique: str, tmp_path: Path, scale: str
) -> None:
    full = full_scale(scale)
    clean_n, mixed_n, bad_share = (20_000, 20_000, 0.25) if full else (1_500, 1_500, 0.25)
    settings = chaos_settings(stack.bootstrap, stack.registry_url, unique)
    create_topics(app, settings)
    topic = settings.topic("orders.created")
    publisher = publisher_for(app, settings)
    clean = Workload.build(publisher, clean_n, duplicate_share=0.0, poison_share=0.0, prefix="clean")
    mixed_valid = Workload.build(publisher, mixed_n, duplicate_share=0.0, poison_share=0.0, prefix="mixed")
    codec = AvroCodec(SchemaRegistryClient(stack.registry_url))
    reader = app.contract("orders.created").schema
    valid_values = [v for _, v in mixed_valid.records[:200] if v is not None]
    n_bad = int(mixed_n * bad_share / (1 - bad_share))
    bad = {f"fuzz-{i}".encode(): v for i, v in enumerate(bad_frames(valid_values, n_bad, codec, reader, 77))}
    rng = random.Random(78)
    mixed_records = [*mixed_valid.records, *bad.items()]
    rng.shuffle(mixed_records)

    with chaos_partner(tmp_path) as partner:
        workers = Workers(settings, tmp_path, partner.url)
        try:
            workers.start("w1")
            workers.wait_ready()
            rates = []
            done = 0
            for records, n in ((clean.records, clean.uniques), (mixed_records, mixed_valid.uniques)):
                Feeder(stack.bootstrap, topic, records, 0).start().join()
                started = time.monotonic()
                done += n
                progress(partner, done, 300, f"{done} valid events completed", workers)
                rates.append(n / (time.monotonic() - started))
            workload = Workload(
                records=[*clean.records, *mixed_records],
                wanted=clean.wanted | mixed_valid.wanted,
                poison=bad,
                uniques=clean.uniques + mixed_valid.uniques,
                duplicates=0,
            )
            sc = Scenario("agent-fuzz", app, settings, stack.registry_url, workload, partner, workers)
            sc.faults = {
                "bad_frames": len(bad),
                "valid_per_s_clean": round(rates[0], 1),
                "valid_per_s_with_poison": round(rates[1], 1),
            }
            check_invariants(sc, complete_within_s=120)
            # Poison is a quarter of the mixed stream and each dead letter waits for its ack:
            # valid events may slow down, but not collapse.
            assert rates[1] >= 0.5 * rates[0], (
                f"throughput with poison {rates[1]:.0f}/s vs clean {rates[0]:.0f}/s"
            )
        finally:
            workers.close()
