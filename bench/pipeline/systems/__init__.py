"""The systems under test: name -> how the harness launches it as a subprocess.

Every system is a separate process started with the `SystemEnv` environment
(see `bench.pipeline.wire`), consumes the source topic with a fresh group from the
earliest offset, writes one status event per consumed record, and runs until SIGTERM.
`quix` runs with the Python of a separate virtualenv (see `bench/requirements-quix.txt`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.pipeline.wire import REPO_ROOT

QUIX_REQUIREMENTS = REPO_ROOT / "bench" / "requirements-quix.txt"
DEFAULT_QUIX_VENV = REPO_ROOT / ".streams" / "bench" / "quix-venv"


@dataclass(frozen=True)
class SystemSpec:
    name: str
    module: str
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return [self.python, "-m", self.module]


def ensure_quix_python(venv: Path = DEFAULT_QUIX_VENV) -> str:
    """The quix virtualenv's python, created from bench/requirements-quix.txt if missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(QUIX_REQUIREMENTS)], check=True)
    return str(python)


def variant(name: str, tuning_json: str) -> SystemSpec:
    """`streams` with experimental settings (see systems/streams_app.py); "mode": "unsafe"
    in the JSON runs it as streams-unsafe does."""
    tuning = json.loads(tuning_json)  # fail now, not in the subprocess
    mode = str(tuning.pop("mode", "safe"))
    return SystemSpec(
        name,
        "bench.pipeline.systems.streams_app",
        env={"BENCH_STREAMS_MODE": mode, "BENCH_STREAMS_TUNING": json.dumps(tuning)},
    )


def get(name: str, quix_python: str | None = None) -> SystemSpec:
    base = "bench.pipeline.systems."
    if name == "raw":
        return SystemSpec(name, base + "raw")
    if name == "floor":
        return SystemSpec(name, base + "floor")
    if name == "faust-naive":
        return SystemSpec(name, base + "faust_naive")
    if name in ("faust-batch", "faust-batch-rocksdict"):
        ledger = "rocksdict" if name.endswith("rocksdict") else "table"
        return SystemSpec(name, base + "faust_batch", env={"BENCH_FAUST_LEDGER": ledger})
    if name == "quix":
        return SystemSpec(name, base + "quix_app", python=quix_python or ensure_quix_python())
    if name in ("streams", "streams-unsafe"):
        mode = "unsafe" if name == "streams-unsafe" else "safe"
        return SystemSpec(name, base + "streams_app", env={"BENCH_STREAMS_MODE": mode})
    raise ValueError(f"unknown system {name!r}; known: {', '.join(NAMES)}")


NAMES = (
    "raw",
    "floor",
    "faust-naive",
    "quix",
    "streams",
    "streams-unsafe",
    "faust-batch",
    "faust-batch-rocksdict",
)
