"""Benchmark: the DTR operations in process (no network), per call.

- ``$questionnaire-package`` for an order of the EOCCO329 co-pack (two
  Bundles: Questionnaire, draft response, prepopulation Library, ValueSets);
- ``$next-question`` on the EOCCO329 initial adaptive form, each round of a
  round trip answered from the case table's ``initial_met`` answers;
- ``$evaluate`` of the completed adaptive response, for comparison.

Run: ``.venv/bin/python bench/bench_dtr.py [--rounds N]``. Prints medians and
90th percentiles in ms. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from questionnaires.checks import iter_items
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.dtr_requests import FHIR, ask, canonical, order, the_bundle


def _timed(call: Callable[[], Any], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _row(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[max(0, int(len(ordered) * 0.9) - 1)]
    return f"| {name} | {statistics.median(times):.1f} | {p90:.1f} | {len(times)} |"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    app = create_app(
        Settings(database=str(folder / "bench.sqlite3")),
        catalog=Catalog.bundled(),
        clock=lambda: AS_OF,
    )
    client = authorize(TestClient(app))
    package = package_for(app.state.catalog, "eocco329", "initial")
    co_pack = order([], "Avmapki Fakzynja Co-Pack")
    packaging = _timed(lambda: ask(client, co_pack), args.rounds)

    static = package.questionnaire
    adaptive = f"{static['url']}-adaptive|{static['version']}"
    answers = base_answers("eocco329", "initial_met")
    by_link = {package.link_of.get(k, k): v for k, v in answers.items()}
    steps: list[float] = []
    evaluations: list[float] = []
    for _ in range(max(1, args.rounds // 5)):
        response = the_bundle(ask(client, canonical(adaptive)))["entry"][1]["resource"]
        while response["status"] != "completed":
            asked = [
                i["linkId"]
                for i, _ in iter_items(response["contained"][0].get("item", []))
                if i["type"] != "group"
            ]
            response["item"] = fill(package, {k: by_link[k] for k in asked if k in by_link})["item"]
            body = json.dumps(response)
            start = time.perf_counter()
            reply = client.post("/Questionnaire/$next-question", content=body, headers=FHIR)
            steps.append((time.perf_counter() - start) * 1e3)
            response = reply.json()
        body = json.dumps({**response, "id": f"bench-{len(evaluations)}"})
        start = time.perf_counter()
        client.post("/QuestionnaireResponse/$evaluate", content=body, headers=FHIR)
        evaluations.append((time.perf_counter() - start) * 1e3)
    print("| Operation | median ms | p90 ms | calls |")
    print("|---|---|---|---|")
    print(_row("$questionnaire-package (order: 2 Bundles)", packaging))
    print(_row("$next-question (EOCCO329 initial, adaptive)", steps))
    print(_row("$evaluate (the completed adaptive response, stored)", evaluations))


if __name__ == "__main__":
    main()
