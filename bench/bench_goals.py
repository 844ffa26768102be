"""Benchmark: every speed goal of the project, in one run, each figure beside
its goal.

Runs, one after the other and each in its own process (so one's caches and
threads do not slow the next):

- ``bench_score.py`` — the scorer per EOCCO329 initial response beside the
  fhirpath.js anchor measured in the same run (goal: at most 3 times the anchor);
- ``bench_large_form.py`` — a 1,000-item response and the growth exponent
  from 300 items (goals: under 20 ms, exponent at most 1.1);
- ``bench_start.py`` — ``dtr score``'s start-up overhead, the catalog read
  from its cache (goal: under 250 ms);
- ``bench_load.py`` — durable determinations per second at 32 clients with
  a worker per core on SQLite (stretch goal: 1,000/s with a p99 under 100 ms,
  which needs at most 1.9 ms of server CPU a determination).

Prints each benchmark's own output, then the table of figures against goals.
The machine is shared: run it when nothing else does, and read the ratios
and the CPU per determination before the raw rates. Not a test: nothing
here asserts a time.

Run: ``.venv/bin/python bench/bench_goals.py [--quick]`` (``--quick``: a
round or a second of each, to see that it runs; the figures mean nothing).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Goal:
    figure: str
    goal: str
    # the figure as printed and whether it meets the goal, from the output
    read: Callable[[str], tuple[str, bool | None]]


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1].replace(",", "")) if found else None


def _scorer(out: str) -> tuple[str, bool | None]:
    ours = _number(r"^scorer \(.*?:\s+([\d.]+) ms/response", out)
    anchor = _number(r"^anchor, fhirpath\.js.*?:\s+([\d.]+) ms/response", out)
    if ours is None or anchor is None:
        return "not measured (fhirpath.js missing?)", None
    return f"{ours:.2f} ms; anchor {anchor:.2f} ms: {ours / anchor:.1f}x", ours <= 3 * anchor


def _large(out: str) -> tuple[str, bool | None]:
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]*) \|$", out, re.MULTILINE)
    if not rows:
        return "not measured", None
    size, ms, exponent = rows[-1]
    shown = f"{size} items {float(ms):.1f} ms, exponent {exponent or '—'}"
    met = float(ms) < 20 and bool(exponent) and float(exponent) <= 1.1 and size == "1000"
    return shown, met


def _start(out: str) -> tuple[str, bool | None]:
    row = re.search(r"^\| `dtr score`, catalog from the cache \| (.*)$", out, re.MULTILINE)
    if row is None:
        return "not measured", None
    cells = [c.strip() for c in row[1].split("|")]
    overhead = float(cells[3])  # wall median, wall best, in the scorer, overhead median
    return f"{overhead:.0f} ms overhead (median)", overhead < 250


def _load(out: str) -> tuple[str, bool | None]:
    rows = re.findall(r"^\| (\d+) \| (\d+) \| (\d+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \| ([\d.]+) \|", out, re.MULTILINE)  # fmt: skip
    if not rows:
        return "not measured (wrk missing?)", None
    workers, clients, rate, p99, cpu = rows[-1]
    shown = (
        f"{rate}/s at {clients} clients, {workers} workers; p99 {p99} ms;"
        f" {cpu} ms server CPU a determination"
    )
    return shown, int(rate) >= 1000 and float(p99) < 100


RUNS: list[tuple[str, list[str], list[str], Goal]] = [
    (
        "bench_score",
        [],
        ["--rounds", "1", "--responses", "2"],
        Goal("scorer, EOCCO329 initial response", "≤ 3x fhirpath.js", _scorer),
    ),
    (
        "bench_large_form",
        ["--sizes", "100", "300", "1000"],
        ["--sizes", "10", "30", "--rounds", "1"],
        Goal("1,000-item response", "< 20 ms, exponent ≤ 1.1", _large),
    ),
    (
        "bench_start",
        [],
        ["--rounds", "1"],
        Goal("`dtr score` start-up overhead", "< 250 ms", _start),
    ),
    (
        "bench_load",
        ["--seconds", "10", "--clients", "32", "--workers", str(CORES)],
        ["--seconds", "1", "--clients", "4", "--workers", "1"],
        Goal("durable determinations/s (SQLite)", "≥ 1,000/s, p99 < 100 ms (stretch)", _load),
    ),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round of each")
    args = parser.parse_args(argv)
    rows: list[tuple[Goal, str, bool | None]] = []
    for name, full, quick, goal in RUNS:
        print(f"## {name}\n", flush=True)
        done = subprocess.run(
            [sys.executable, str(BENCH / f"{name}.py"), *(quick if args.quick else full)],
            capture_output=True,
            text=True,
        )
        print(done.stdout, flush=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], flush=True)
            rows.append((goal, f"failed (exit status {done.returncode})", False))
            continue
        shown, met = goal.read(done.stdout)
        rows.append((goal, shown, met))
    print("## Against the goals\n")
    print("| figure | now | goal | met |")
    print("|---|---|---|---|")
    for goal, shown, met in rows:
        verdict = "—" if met is None else ("yes" if met else "no")
        print(f"| {goal.figure} | {shown} | {goal.goal} | {verdict} |")


if __name__ == "__main__":
    main()
