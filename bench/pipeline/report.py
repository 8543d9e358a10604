"""Turn observations into rows, print the table with ratios, write the run's JSON.

A row is {"name", "events_per_s", "cpu_s_per_million", "p50_ms", "p99_ms",
"peak_rss_mb"} (None where a system failed or was skipped). The JSON file
bench/results/<timestamp>.json holds {"parameters", "rows", "details"}; details keep the
per-system notes, outcome counts, startup time and total CPU.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.pipeline.measure import Observation, StatusRecord

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
COLUMNS = ("events_per_s", "cpu_s_per_million", "p50_ms", "p99_ms", "peak_rss_mb")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def make_row(
    name: str, events: int, obs: Observation, statuses: list[StatusRecord]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row and the details of one system."""
    row: dict[str, Any] = {"name": name, **dict.fromkeys(COLUMNS)}
    outcomes: dict[str, int] = {}
    for s in statuses:
        outcomes[str(s.outcome)] = outcomes.get(str(s.outcome), 0) + 1
    details: dict[str, Any] = {
        "name": name,
        "ok": obs.ok,
        "note": obs.note,
        "statuses": len(statuses),
        "outcomes": outcomes,
        "startup_s": round(obs.startup_s, 2),
        "cpu_s_total": round(obs.cpu_total, 2),
    }
    if not obs.ok or len(statuses) < events:
        return row, details
    times = sorted(s.timestamp_ms for s in statuses)
    t_first = obs.first_record_ms if obs.first_record_ms is not None else float(times[0])
    elapsed_s = max((times[events - 1] - t_first) / 1000.0, 1e-3)
    latencies = [
        float(s.timestamp_ms - obs.tail_sources[s.source])
        for s in statuses
        if s.source is not None and s.source in obs.tail_sources
    ]
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    row.update(
        events_per_s=round(events / elapsed_s, 1),
        cpu_s_per_million=round((obs.cpu_drained - obs.cpu_start) / events * 1e6, 2),
        p50_ms=None if p50 is None else round(p50, 1),
        p99_ms=None if p99 is None else round(p99, 1),
        peak_rss_mb=round(obs.peak_rss_mb, 1),
    )
    details.update(
        backlog_s=round(elapsed_s, 3),
        # CPU seconds per wall second while draining: below 1 the system waited (or, on a
        # shared machine, its core was busy with something else).
        cpu_busy=round((obs.cpu_drained - obs.cpu_start) / elapsed_s, 2),
        latency_samples=len(latencies),
        tail_rate=round(obs.tail_rate, 1),
        # CPU per tail event (paced, small batches) - compare with cpu_s_per_million.
        tail_cpu_s_per_million=round((obs.cpu_total - obs.cpu_drained) / len(obs.tail_sources) * 1e6, 1)
        if obs.tail_sources and obs.cpu_total
        else None,
    )
    return row, details


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _ratio(row: dict[str, Any], base: dict[str, Any] | None, key: str) -> str:
    if base is None or row.get(key) is None or not base.get(key):
        return "-"
    return f"{row[key] / base[key]:.2f}x"


def table(rows: list[dict[str, Any]]) -> str:
    by_name = {r["name"]: r for r in rows}
    floor, raw = by_name.get("floor"), by_name.get("raw")
    head = ["system", "events/s", "cpu s/1M", "p50 ms", "p99 ms", "peak RSS MB"]
    head += ["eps/floor", "eps/raw", "cpu/floor", "cpu/raw"]
    lines = [head]
    for r in rows:
        lines.append(
            [
                r["name"],
                *(_fmt(r[c]) for c in COLUMNS),
                _ratio(r, floor, "events_per_s"),
                _ratio(r, raw, "events_per_s"),
                _ratio(r, floor, "cpu_s_per_million"),
                _ratio(r, raw, "cpu_s_per_million"),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write(run_id: str, parameters: dict[str, Any], rows: list[dict[str, Any]], details: list[Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{run_id}.json"
    payload = {"parameters": parameters, "rows": rows, "details": details}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
