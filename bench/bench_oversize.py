"""Benchmark: what a response padded with thousands of extra items costs.

A QuestionnaireResponse body may be up to 16 MB (attachments), so a client
can send tens of thousands of items a form never asks. Measured in process,
per call, in the same run:

- **anchor** — scoring one ordinary completed EOCCO329 initial response
  (``score_json``: checks, answers indexed, criteria);
- **refused** — the same response with ``--extra`` items appended: refused
  by the size bound (``check_size``) before any work per item;
- **unbounded** — what the structure check alone (the walk of
  ``scoring/structure.py``, the first per-item work) costs on that response
  when nothing bounds it, as the service did before the bound.

Run: ``.venv/bin/python bench/bench_oversize.py [--extra N] [--rounds N]``.
Prints medians and ratios to the anchor. Not a test: nothing here asserts a
time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qpackage.catalog import Catalog, score_json
from scoring import InvalidInput
from scoring.fill import fill
from scoring.response import check_structure
from tests.support.cases import base_answers, package_for

AS_OF = date(2026, 11, 24)


def median_ms(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extra", type=int, default=20_000, help="items appended")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    catalog = Catalog.bundled()
    package = package_for(catalog, "eocco329", "initial")
    ordinary = fill(package, base_answers("eocco329", "initial_met"))
    padded = json.loads(json.dumps(ordinary))
    padded["item"] += [{"linkId": f"extra-{n}", "text": "x"} for n in range(args.extra)]
    body = json.dumps(padded).encode()

    def refused() -> None:
        try:
            score_json(catalog, body, AS_OF)
        except InvalidInput:
            return
        raise AssertionError("the padded response was not refused")

    def unbounded() -> None:
        with contextlib.suppress(InvalidInput):
            check_structure(padded)

    anchor = median_ms(
        lambda: score_json(catalog, json.dumps(ordinary).encode(), AS_OF), args.rounds
    )
    rows = [
        ("anchor: an ordinary response scored", anchor),
        (f"refused: {args.extra:,} extra items ({len(body) / 1e6:.1f} MB, JSON parse included)",
         median_ms(refused, args.rounds)),
        (f"unbounded: structure check of the same {args.extra:,} items",
         median_ms(unbounded, max(3, args.rounds // 5))),
    ]  # fmt: skip
    print(f"{'path':<72} {'ms':>9} {'x anchor':>9}")
    for name, ms in rows:
        print(f"{name:<72} {ms:>9.2f} {ms / anchor:>9.1f}")


if __name__ == "__main__":
    main()
