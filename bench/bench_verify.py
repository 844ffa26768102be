"""Benchmark: build-time verification of each bundled policy.

For each policy, the time of ``verify_policy`` (expression checks, each
criterion over its answer domain, and the whole form explored with the real
scorer), and the number of scorings the exploration made — with the
expression results memoised by the values they read (what ``dtr check`` and
``dtr build`` do) and without.

Run: ``.venv/bin/python bench/bench_verify.py``. Prints seconds and ratios.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builder.verification.explore import explore_forms
from builder.verification.verify import criterion_problems, expression_problems
from policies.loader import bundled_policies


def timed(policy, memo: bool) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    assert expression_problems(policy) == []
    scorings = 0
    for explorer in explore_forms(policy, memo=memo):
        assert criterion_problems(explorer) == []
        result = explorer.run()
        assert result.problems == []
        scorings += result.evaluations
    return time.perf_counter() - started, scorings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy", nargs="*", help="policy ids (default: every bundled policy)")
    args = parser.parse_args(argv)
    print(f"{'policy':<18} {'scorings':>9} {'memoised s':>11} {'plain s':>9} {'ratio':>6}")
    for policy in bundled_policies():
        if args.policy and policy.id not in args.policy:
            continue
        fast, scorings = timed(policy, memo=True)
        slow, _ = timed(policy, memo=False)
        print(f"{policy.id:<18} {scorings:>9} {fast:>11.2f} {slow:>9.2f} {slow / fast:>5.1f}x")


if __name__ == "__main__":
    main()
