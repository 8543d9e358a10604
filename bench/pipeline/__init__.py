"""`python -m bench pipeline`: the dedup-and-status workload through several systems.

See `bench.pipeline.run` for the flow and `bench.pipeline.measure` for what each number
means. This package's import stays light: system subprocesses (one of them in another
virtualenv) import `bench.pipeline.wire` and `bench.pipeline.systems.*` only.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from bench.pipeline.run import main as run_main

    return run_main(argv)
