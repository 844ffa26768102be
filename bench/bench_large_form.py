"""Benchmark: how scoring grows with the size of a form.

A synthetic policy of N criteria (each one yes/no question, every other one
asked only when the question before it is answered yes; all must be met) is
built and compiled as any policy is, a response answering every question is
filled, and the scorer's time per response is measured for several N. The
growth exponent between two sizes (log of the time ratio over log of the size
ratio) is printed: 1.0 is linear.

Run: ``.venv/bin/python bench/bench_large_form.py [--sizes 100 300 1000]``.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.questionnaire import build
from cql_like.engine import CompiledRequest
from policies.model import Policy
from scoring import score
from scoring.fill import fill

AS_OF = date(2026, 11, 24)


def policy_of(size: int) -> Policy:
    criteria: list[dict[str, Any]] = []
    for n in range(size):
        criterion: dict[str, Any] = {
            "id": f"C.{n}",
            "text": f"Criterion {n}",
            "questions": [{"name": f"q{n}", "type": "boolean", "text": f"Question {n}?"}],
            "met": f"%q{n}",
        }
        if n % 2 == 1:
            criterion["enable_when"] = [{"question": f"q{n - 1}", "answer": True}]
        criteria.append(criterion)
    data = {
        "policy": {
            "id": "bench-large",
            "title": "Large form (benchmark)",
            "type": "PA",
            "payer": {"name": "Bench Plan", "identifier": "BENCH"},
            "version": "1.0.0",
            "date": "2026-01-01",
            "canonical_base": "https://pa-dtr.example.org/fhir",
            "source": "benchmark",
        },
        "drugs": [{"name": "Benchinib"}],
        "authorization": {"initial": {"months": 6}, "renewal": {"months": 12}},
        "initial": {"title": "Initial", "criteria": criteria},
        "renewal": {
            "title": "Renewal",
            "criteria": [{"id": "Renewal.1", "text": "Renewal", "include": "initial"}],
        },
    }
    return Policy.model_validate(data)


def per_response(size: int, rounds: int) -> float:
    policy = policy_of(size)
    package = CompiledRequest(policy, "initial", build(policy, "initial"))
    response = fill(package, {f"q{n}": True for n in range(size)})
    assert score(package, response, AS_OF).outcome == "approved"
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        score(package, response, AS_OF)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print("| items | ms per response | exponent from the size before |")
    print("|---|---|---|")
    previous: tuple[int, float] | None = None
    for size in args.sizes:
        seconds = per_response(size, args.rounds)
        growth = ""
        if previous is not None:
            growth = f"{math.log(seconds / previous[1]) / math.log(size / previous[0]):.2f}"
        print(f"| {size} | {seconds * 1e3:.2f} | {growth} |")
        previous = (size, seconds)


if __name__ == "__main__":
    main()
