"""Pieces of bench/ and the ledger's hot path that need no broker: profile summaries, entries."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.pipeline.profile import frame_name, matching, parse, render, summarise
from streams.ledger import LedgerEntry

STACKS = """\
process 1:"python" ;_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:84) 3
process 1:"python" ;_run_once (asyncio/base_events.py:1922);Ledger.record (/work/main/streams/ledger.py:290);get (/x/site-packages/faust/tables/base.py:12) 5
process 1:"python" ;_run_once (asyncio/base_events.py:1922);Ledger.record (/work/main/streams/ledger.py:301) 2
not a stack line
"""


def test_frame_names_drop_lines_and_shorten_paths() -> None:
    assert frame_name("get (/x/site-packages/faust/tables/base.py:12)") == "get (faust/tables/base.py)"
    assert (
        frame_name("Ledger.record (/work/main/streams/ledger.py:290)") == "Ledger.record (streams/ledger.py)"
    )
    assert frame_name("process 1") == "process 1"


def test_summarise_counts_self_and_inclusive_samples_once_per_stack() -> None:
    total, own, inclusive = summarise(parse(STACKS.splitlines()))
    assert total == 10
    assert own["get (faust/tables/base.py)"] == 5
    assert own["Ledger.record (streams/ledger.py)"] == 2
    assert inclusive["Ledger.record (streams/ledger.py)"] == 7  # two lines, one frame name
    assert inclusive["_run_once (asyncio/base_events.py)"] == 10


def test_matching_counts_samples_under_a_frame() -> None:
    stacks = parse(STACKS.splitlines())
    assert matching(stacks, "Ledger.record") == 7
    assert matching(stacks, "faust/") == 5
    assert matching(stacks, "nowhere") == 0


def test_render_shows_shares(tmp_path: Path) -> None:
    path = tmp_path / "s.pyspy.txt"
    path.write_text(STACKS)
    text = render(path, top=3)
    assert "10 samples" in text
    assert " 50.0%       5  get (faust/tables/base.py)" in text


def test_ledger_entry_json_is_what_asdict_wrote() -> None:
    entry = LedgerEntry("COMPLETED", 2, 1, 3, "e-1", "Boom", 3, "t/0/7")
    assert entry.to_json() == dataclasses.asdict(entry)
    assert list(entry.to_json()) == [f.name for f in dataclasses.fields(LedgerEntry)]
    assert LedgerEntry.from_json(entry.to_json()) == entry
