"""Benchmark: scoring one completed EOCCO329 response.

Compares, on the same responses (the EOCCO329 initial cases of the clinical
case table):

- **naive** — every definition evaluated with ``fhirpathpy.evaluate`` afresh
  (parsed each time), reading its answers from the whole response with
  ``descendants().where(linkId = …)``;
- **compiled** — the same expressions compiled once, still reading the whole
  response;
- **ours** — the scorer: parsed JSON → input checks → answers indexed once by
  linkId → compiled definitions → Determination;
- **anchor** — fhirpath.js (the npm ``fhirpath`` pinned in ``cql/``), every
  definition of the published Library compiled once and the answers read
  once per response, untimed; then every definition evaluated
  (``cql/fhirpath-library.mjs``). Skipped when Node or the package is
  missing. The ratio of ours to it is the figure to watch, both measured in
  this run.

Run: ``.venv/bin/python bench/bench_score.py [--rounds N]``. Prints medians
(per response) and ratios. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cql_like.engine import CompiledRequest
from cql_like.gateway import Expression, compile_expression, date_span, plain
from qpackage.catalog import Catalog
from scoring import score
from scoring.fill import fill
from scoring.response import check_answers, check_structure
from tests.support.cases import load_scoring_cases, package_for
from tests.support.libraries import read_library
from tests.support.node import run_node
from tests.support.paths import ROOT

AS_OF = date(2026, 11, 24)


def whole_response_source(package: CompiledRequest, source: str) -> str:
    """Rewrite ``%name`` (an indexed answer) into a search of the whole response."""
    for name, link_id in sorted(package.link_of.items(), key=lambda kv: -len(kv[0])):
        lookup = f"(%resource.descendants().where(linkId = '{link_id}').answer.value)"
        source = re.sub(rf"%{name}\b", lookup, source)
    return source


class Naive:
    """Quacks like a compiled Expression but parses and evaluates afresh each call."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        self.reads = compile_expression(name, source).reads  # what the engine asks of it

    def evaluate(self, resource: Mapping[str, Any], variables: Mapping[str, Any]) -> list[Any]:
        env = {"resource": resource, "context": resource, **variables}
        return [
            plain(v)
            for v in fhirpathpy.evaluate(dict(resource), self.source, env, model=models["r4"])
        ]

    @staticmethod
    def truth_of(result: list[Any]) -> bool | None:
        return None if result == [] else bool(result[0])

    def truth(self, resource: Mapping[str, Any], variables: Mapping[str, Any]) -> bool | None:
        return self.truth_of(self.evaluate(resource, variables))


def variant(package: CompiledRequest, make: Callable[[str, str], Any]) -> CompiledRequest:
    """The same package with every expression made by ``make`` over the whole response."""
    clone = CompiledRequest(package.policy, package.kind, package.questionnaire)
    clone.expressions = {
        d.name: make(d.name, whole_response_source(package, d.expression))
        for d in package.definitions
    }
    clone.derived = [clone.expressions[value.name] for value in package.policy.derived]
    clone.limit_expressions = [
        clone.expressions[d.name] for d in package.definitions if d.role == "limit"
    ]
    clone.items = {
        link: type(spec)(**{**spec.__dict__, "enabled": clone.expressions.get(f"enabled {link}")})
        for link, spec in package.items.items()
    }
    return clone


def timed(run: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--responses", type=int, help="use only the first N responses")
    args = parser.parse_args(argv)

    catalog = Catalog.bundled()
    package = package_for(catalog, "eocco329", "initial")
    cases = [c.values[0] for c in load_scoring_cases() if c.values[0]["policy"] == "eocco329"]
    # full dates only: the baselines know nothing of a date of year or month
    # precision, which the scorer treats as a span of days
    responses = [
        fill(package, c["answers"])
        for c in cases
        if c["request"] == "initial" and not any(date_span(v) for v in c["answers"].values())
    ]
    responses = responses[: args.responses] if args.responses else responses
    naive = variant(package, Naive)
    compiled = variant(package, lambda name, source: compile_expression(name, source))
    assert isinstance(next(iter(compiled.expressions.values())), Expression)

    def through(pkg: CompiledRequest) -> Callable[[], None]:
        def run() -> None:
            for response in responses:
                check_structure(response)
                answers = check_answers(package, response)
                pkg.evaluate(response, answers.by_link, AS_OF)

        return run

    def ours() -> None:
        for response in responses:
            score(package, response, AS_OF)

    # the three must agree before their times mean anything
    for response in responses:
        answers = check_answers(package, response).by_link
        expected = package.evaluate(response, answers, AS_OF)
        for other in (naive, compiled):
            got = other.evaluate(response, answers, AS_OF)
            assert (got.unmet, got.missing, got.outcome_value) == (
                expected.unmet,
                expected.missing,
                expected.outcome_value,
            )

    n = len(responses)
    t_naive = timed(through(naive), max(3, args.rounds // 5)) / n
    t_compiled = timed(through(compiled), args.rounds) / n
    t_ours = timed(ours, args.rounds) / n
    definitions = len(package.definitions)
    print(f"EOCCO329 initial: {n} responses, {definitions} definitions, {len(package.items)} items")
    print(
        f"naive (fhirpathpy.evaluate per definition, whole response): {t_naive * 1e3:8.2f} ms/response"
    )
    print(
        f"compiled once, whole response:                             {t_compiled * 1e3:8.2f} ms/response"
    )
    print(
        f"scorer (checks + indexed answers + compiled definitions):   {t_ours * 1e3:8.2f} ms/response"
    )
    print(f"speed-up over naive:    {t_naive / t_ours:6.1f}x")
    print(f"speed-up over compiled: {t_compiled / t_ours:6.1f}x")
    anchor = fhirpath_js(package, responses, args.rounds)
    if anchor is None:
        print("anchor (fhirpath.js): not run (needs node and scripts/install-cql-tools)")
    else:
        print(
            f"anchor, fhirpath.js (definitions only):                     {anchor:8.2f} ms/response"
        )
        print(f"scorer / anchor:        {t_ours * 1e3 / anchor:6.1f}x")


def fhirpath_js(package: CompiledRequest, responses: list[Any], rounds: int) -> float | None:
    """fhirpath.js's time per response for the published Library's
    definitions, or None when it cannot run here."""
    script = ROOT / "cql" / "fhirpath-library.mjs"
    if shutil.which("node") is None or not (ROOT / "cql" / "node_modules" / "fhirpath").exists():
        return None
    path = ROOT / "questionnaires" / f"Library-{package.questionnaire['id']}-logic.json"
    library = read_library(json.loads(path.read_text(encoding="utf-8")))
    request = {
        **library,
        "rounds": rounds,
        "cases": [{"response": r, "as_of": AS_OF.isoformat()} for r in responses],
    }
    return float(run_node(script, request, timeout=600)["msPerResponse"])


if __name__ == "__main__":
    main()
