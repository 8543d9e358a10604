"""Summarise py-spy collapsed stacks: where a system's samples went, as text.

    python -m bench.pipeline.profile bench/results/tmp/<run>/streams.pyspy.txt [--top 25]
    python -m bench.pipeline.profile bench/results/profiles/<run>-streams.pyspy.txt.gz

py-spy's raw format is one line per distinct stack, "frame;frame;...;frame count", outer
frame first, each frame "function (file:line)". Two tables:

- self: the innermost frame of each sample, by function and file (line dropped), as a
  share of all samples - where the CPU actually is;
- inclusive: every function present anywhere in a sample's stack (counted once per
  sample) - which call paths the time is spent under.

Paths are shortened to what follows `site-packages/` or the repository root. With
`--match TEXT` (repeatable) it prints, instead, the share of samples whose stack has a
frame containing TEXT - how much time is spent under a function or in a package.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def frame_name(frame: str) -> str:
    """`func (path:line)` -> `func (short path)`; anything else unchanged."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{m['func']} ({_short(m['file'])})"


def parse(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append(([frame_name(f) for f in stack.split(";") if f], int(count)))
    return stacks


def summarise(stacks: list[tuple[list[str], int]]) -> tuple[int, Counter[str], Counter[str]]:
    """(total samples, self samples by frame, inclusive samples by frame)."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        total += count
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return total, own, inclusive


def read(path: Path) -> list[str]:
    """The lines of a collapsed-stacks file, gzipped (`.gz`) or not."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as fh:
            return fh.read().splitlines()
    return path.read_text().splitlines()


def render(path: Path, top: int = 25) -> str:
    total, own, inclusive = summarise(parse(read(path)))
    if not total:
        return f"{path}: no samples"
    out = [f"{path.name}: {total} samples"]
    for title, counts in (("self", own), ("inclusive", inclusive)):
        out.append(f"\n{title}:")
        for name, n in counts.most_common(top):
            out.append(f"  {100.0 * n / total:5.1f}%  {n:6d}  {name}")
    return "\n".join(out)


def matching(stacks: list[tuple[list[str], int]], pattern: str) -> int:
    """Samples with a frame containing `pattern` anywhere in their stack."""
    return sum(count for frames, count in stacks if any(pattern in f for f in frames))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline.profile", description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="TEXT",
        help="instead of the tables: the share of samples with a frame containing TEXT (repeatable)",
    )
    args = p.parse_args(argv)
    for f in args.files:
        if not args.match:
            print(render(f, args.top))
            continue
        stacks = parse(read(f))
        total = sum(count for _, count in stacks) or 1
        print(f"{f.name}: {total} samples")
        for pattern in args.match:
            print(f"  {100.0 * matching(stacks, pattern) / total:5.1f}%  {pattern}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
