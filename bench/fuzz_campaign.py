"""Fuzz campaign: many mutated responses through ``score_json``, in process.

The mutations of the property-based test (``tests/scoring/fuzz_mutations.py``),
drawn with a plain ``random.Random`` so that a long run is fast: each input is
a valid response of the clinical case tables, mutated 1-3 times as JSON, then
sent as a dict, JSON text or (possibly broken) bytes. Checked on each:

- (a) the result is a Determination or ``InvalidInput`` (4xx, with an
  OperationOutcome) — any other exception is counted by class (type and
  innermost frame of this project) and the first few are printed with their
  traceback and the mutations that made the input;
- (b) when it is a Determination, dropping one answered item does not gain an
  approval (nor turn an approval into a denial or investigational), and
  neither does cutting a date answer to its year or month. Before the random
  inputs, every single drop and cut of every valid response is checked.

Run: ``.venv/bin/python bench/fuzz_campaign.py [--count N] [--seed S]``.
Exit status 1 when any exception or property violation was found. Not a test.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qpackage.catalog import Catalog
from scoring import Determination, InvalidInput
from tests.scoring.fuzz_mutations import (
    Base,
    Encoding,
    Failure,
    Mutation,
    check_less_information,
    coarsen_date,
    date_answers,
    drop_item,
    encode,
    load_bases,
    mutate,
    paths,
    random_encoding,
    random_plan,
    score_checked,
    settle,
)

ROOT = str(Path(__file__).resolve().parent.parent) + "/"
SHOWN = 5  # exceptions and violations printed in full


def kind_of(exc: BaseException) -> str:
    """An exception's class: its type, the innermost frame of this project and
    the frame that raised it, e.g. ``AttributeError at scoring/response.py:12
    (raised in fhir_core/types.py:680)``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(ROOT) and "/.venv/" not in f.filename]
    mine = [f for f in ours if not f.filename.endswith(("fuzz_mutations.py", "fuzz_campaign.py"))]
    if not frames:
        return type(exc).__name__
    frame = (mine or ours or frames)[-1]
    where = f" at {frame.filename.removeprefix(ROOT)}:{frame.lineno}"
    if frame is not frames[-1]:  # raised in a library: where, too
        inner = frames[-1]
        library = inner.filename.split("site-packages/")[-1].removeprefix(ROOT)
        where += f" (raised in {library}:{inner.lineno})"
    return f"{type(exc).__name__}{where}"


def describe(base: Base, mutations: list[Mutation], encoding: Encoding | None, extra: str) -> str:
    lines = [f"    base: {base.name}"]
    lines += [f"    mutation: {m}" for m in mutations]
    if encoding is not None:
        lines.append(f"    encoding: {encoding}")
    if extra:
        lines.append(f"    then: {extra}")
    return "\n".join(lines)


class Tally:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.determinations: Counter[str] = Counter()
        self.refusals: Counter[int] = Counter()
        self.exceptions: Counter[str] = Counter()
        self.first: dict[str, str] = {}  # exception class → its first input and message
        self.violations: Counter[str] = Counter()
        self.reductions = 0
        self.shown = 0

    def show(self, title: str, text: str) -> None:
        if self.shown < SHOWN:
            self.shown += 1
            print(f"\n--- {title} ---\n{text}")

    def score(
        self,
        base: Base,
        mutations: list[Mutation],
        body: Any,
        as_of: date,
        encoding: Encoding | None = None,
        extra: str = "",
    ) -> Determination | InvalidInput | None:
        try:
            return score_checked(self.catalog, body, as_of)
        except Failure:
            raise
        except Exception as exc:
            kind = kind_of(exc)
            self.exceptions[kind] += 1
            where = describe(base, mutations, encoding, extra)
            if kind not in self.first:
                self.first[kind] = (
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}\n{where}"
                )
            tail = "".join(traceback.format_exception(exc)[-6:]).rstrip()
            self.show(f"exception {kind}", f"{where}\n{tail}")
            return None

    def less_information(
        self, base: Base, mutations: list[Mutation], doc: dict[str, Any], full: Determination
    ) -> None:
        """(b) on ``doc``: one random drop and one random date cut (all of them
        when ``mutations`` is empty: the valid responses themselves)."""
        reductions: list[tuple[str, dict[str, Any]]] = []
        answered, dates = paths(doc).answered, date_answers(doc)
        if not mutations:
            picked_drops, picked_cuts = list(answered), [(p, k) for p in dates for k in (4, 7)]
        else:
            picked_drops = [random.choice(answered)] if answered else []
            picked_cuts = [(random.choice(dates), random.choice((4, 7)))] if dates else []
        for path in picked_drops:
            reductions.append((f"drop {'/'.join(map(str, path))}", drop_item(doc, path)))
        for path, keep in picked_cuts:
            what = f"cut {'/'.join(map(str, path))} to {keep} chars"
            reductions.append((what, coarsen_date(doc, path, keep)))
        for what, reduced_doc in reductions:
            self.reductions += 1
            reduced = self.score(base, mutations, reduced_doc, base.as_of, extra=what)
            if reduced is None:
                continue
            try:
                check_less_information(full, reduced, what)
            except Failure as failure:
                self.violations[str(failure).split(" turned ")[1]] += 1
                self.show("less information changed the outcome", f"    {base.name}: {failure}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs to run")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    random.seed(args.seed)  # the picks of less_information
    catalog = Catalog.bundled()
    bases = load_bases(catalog)
    tally = Tally(catalog)

    start = time.perf_counter()
    for base in bases:  # every drop and cut of every valid response
        full = tally.score(base, [], base.doc, base.as_of)
        if isinstance(full, Determination):
            tally.less_information(base, [], base.doc, full)
    exhaustive = tally.reductions

    for _number in range(args.count):
        base = rng.choice(bases)
        plans = [random_plan(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        doc, mutations = mutate(base, plans)
        encoding = settle(doc, random_encoding(rng))
        try:
            result = tally.score(base, mutations, encode(doc, encoding), base.as_of, encoding)
        except Failure as failure:
            tally.exceptions[f"Failure: {failure}"] += 1
            continue
        if result is None:
            continue
        if isinstance(result, InvalidInput):
            tally.refusals[result.status] += 1
            continue
        tally.determinations[result.outcome] += 1
        if isinstance(doc, dict):
            tally.less_information(base, mutations, doc, result)
    elapsed = time.perf_counter() - start

    print(f"\ninputs:          {args.count} (seed {args.seed}; {len(bases)} valid responses)")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(tally.determinations.items()))
    print(f"determinations:  {sum(tally.determinations.values())} ({outcomes})")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally.refusals.items()))
    print(f"refusals (4xx):  {sum(tally.refusals.values())} ({statuses})")
    print(f"exceptions:      {sum(tally.exceptions.values())} (0 expected)")
    for kind, count in tally.exceptions.most_common():
        print(f"  {count:7d}  {kind}")
    for kind, first in tally.first.items():
        print(f"  first {kind}: {first}")
    print(
        f"less information: {tally.reductions} responses with an answer dropped or a date cut"
        f" ({exhaustive} of them every drop and cut of the valid responses)"
    )
    print(f"approvals gained (or lost to a denial): {sum(tally.violations.values())} (0 expected)")
    for kind, count in tally.violations.most_common():
        print(f"  {count:7d}  turned {kind}")
    print(f"elapsed:         {elapsed:.1f} s ({args.count / elapsed:.0f} inputs/s)")
    return 1 if tally.exceptions or tally.violations else 0


if __name__ == "__main__":
    sys.exit(main())
