"""Benchmark: how long ``dtr score`` takes to start, beside ``python -c pass``.

Each run is a new process, as a user runs it: ``dtr score`` on the EOCCO329
example. Its start-up overhead is the process's wall time less the time
spent in the scorer (``score_json``), which ``dtr score`` prints on stderr
("decided under … in N ms"). Three rows, in one run:

- ``python -c pass``: the interpreter alone, the floor;
- ``dtr score``, cache off (``DTR_CACHE=off``): the policy read and verified,
  the form built, every definition it evaluates parsed;
- ``dtr score``, the catalog read back from the cache (qpackage.cache): the
  first run after a change builds it, every later one reads it.

The processes run with bytecode caching on (``PYTHONDONTWRITEBYTECODE``
unset, the project compiled first), as an installed package runs. Medians
and best of ``--rounds`` runs. Not a test: nothing here asserts a time.

Run: ``.venv/bin/python bench/bench_start.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "eocco329-initial-approved.json"
PACKAGES = (
    "access",
    "builder",
    "cql_like",
    "dtr",
    "policies",
    "qpackage",
    "questionnaires",
    "review",
)
SCORED = re.compile(r"decided under \S+ in ([0-9.]+) ms")
GOAL_MS = 250.0


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, ms in the scorer as the command printed it; 0 when none)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    wall = (time.perf_counter() - started) * 1e3
    found = SCORED.search(done.stderr)
    return wall, float(found.group(1)) if found else 0.0


def _row(label: str, runs: list[tuple[float, float]]) -> str:
    walls = [wall for wall, _ in runs]
    overheads = [wall - scored for wall, scored in runs]
    scored = statistics.median(s for _, s in runs)
    return (
        f"| {label} | {statistics.median(walls):.0f} | {min(walls):.0f} | {scored:.1f} |"
        f" {statistics.median(overheads):.0f} | {min(overheads):.0f} |"
    )


def main(argv: Sequence[str] | None = None) -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--rounds", type=int, default=10)
    args = options.parse_args(argv)
    for package in (*PACKAGES, "scoring", "service"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    score = [
        sys.executable,
        "-m",
        "dtr",
        "score",
        str(EXAMPLE),
        "--as-of",
        "2026-11-24",
    ]
    with tempfile.TemporaryDirectory() as folder:
        cached = {**env, "DTR_CACHE": folder}
        _run(score, cached)  # the first run builds the cache
        rows = {
            "`python -c pass`": [sys.executable, "-c", "pass"],
            "`dtr score`, cache off": score,
            "`dtr score`, catalog from the cache": score,
        }
        results: dict[str, list[tuple[float, float]]] = {label: [] for label in rows}
        for _ in range(args.rounds):  # interleaved: a busy moment hits every row alike
            for label, command in rows.items():
                run_env = {**env, "DTR_CACHE": "off"} if "off" in label else cached
                results[label].append(_run(command, run_env))
    print(f"dtr score start-up ({args.rounds} runs each, ms; goal: overhead < {GOAL_MS:.0f})\n")
    print("| process | wall median | wall best | in the scorer | overhead median | overhead best |")
    print("|---|---|---|---|---|---|")
    for label, runs in results.items():
        print(_row(label, runs))


if __name__ == "__main__":
    main()
