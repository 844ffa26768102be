"""The golden run: the whole determination of every case of every scoring
table and of every example response, committed as the reference
(``tests/scoring/golden/determinations.json``).

The case tables check what each case is about; this checks everything else a
determination says (every section list, the authorization, the quantity, the
missing questions, the form version). A refactoring must leave it unchanged.
A deliberate change of a rule or a policy regenerates it —
``DTR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/scoring/test_golden.py`` — and the diff
of the file shows every decision the change moves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qpackage.catalog import score_json
from tests.support.cases import AS_OF, bundled_catalog, load_scoring_cases, run_case
from tests.support.paths import ROOT

GOLDEN = Path(__file__).parent / "golden" / "determinations.json"


def golden_run() -> dict[str, Any]:
    catalog = bundled_catalog()
    run: dict[str, Any] = {}
    for param in load_scoring_cases():
        (case,) = param.values
        run[f"case: {param.id}"] = run_case(catalog, case)
    for path in sorted((ROOT / "examples").glob("*.json")):
        body = path.read_bytes()
        run[f"example: {path.name}"] = score_json(catalog, body, AS_OF).to_json()
    return run


def test_every_determination_is_the_golden_one() -> None:
    run = golden_run()
    if os.environ.get("DTR_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    changed = sorted(k for k in golden.keys() & run.keys() if golden[k] != run[k])
    assert not changed, f"{len(changed)} determinations changed, e.g. {changed[:5]}"
    assert sorted(run.keys() - golden.keys()) == [], "cases without a golden determination"
    assert sorted(golden.keys() - run.keys()) == [], "golden determinations without a case"
