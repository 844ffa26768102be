"""Running a clinical case through the public path: build the Questionnaire,
fill a QuestionnaireResponse, score it, and compare with what the case expects."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from qpackage.catalog import Catalog, score_json
from scoring.fill import fill

CASES = Path(__file__).parent / "cases"
AS_OF = date(2026, 11, 24)
_FOLDER_CATALOGS: dict[str, Catalog] = {}


def folder_catalog(folder: str) -> Catalog:
    """The catalog of a fixture policy folder (a table's ``folder``, relative
    to tests/), built once: policies that are not bundled."""
    if folder not in _FOLDER_CATALOGS:
        _FOLDER_CATALOGS[folder] = Catalog.from_folder(Path(__file__).parent / folder)
    return _FOLDER_CATALOGS[folder]


def case_files() -> list[Path]:
    return sorted(CASES.glob("scoring_*.yaml"))


def load_scoring_cases() -> list[Any]:
    params = []
    for path in case_files():
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in table["cases"]:
            base = case.get("base")
            answers = {} if base == "none" else dict(table["bases"][base])
            answers.update(case.get("set") or {})
            for name in case.get("unset") or []:
                answers.pop(name, None)
            case = {
                **case,
                "policy": table["policy"],
                "folder": table.get("folder"),
                "answers": answers,
            }
            params.append(pytest.param(case, id=f"{table['policy']}: {case['name']}"))
    return params


def base_answers(policy: str, base: str) -> dict[str, Any]:
    """A named answer set of a case table (``bases`` in scoring_<policy>.yaml)."""
    for path in case_files():
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
        if table["policy"] == policy:
            return dict(table["bases"][base])
    raise KeyError(f"{policy} {base}")


def package_for(  # type: ignore[no-untyped-def]
    catalog: Catalog, policy: str, request: str, drug: str | None = None
):
    for package in catalog.current.values():
        if package.policy.id == policy and package.kind == request and package.drug == drug:
            return package
    raise KeyError(f"{policy} {request} {drug or ''}")


def run_case(catalog: Catalog, case: dict[str, Any]) -> dict[str, Any]:
    if case.get("folder"):
        catalog = folder_catalog(case["folder"])
    package = package_for(catalog, case["policy"], case["request"], case.get("drug"))
    response = fill(package, case["answers"])
    determination = score_json(catalog, response, case.get("as_of", AS_OF))
    result = determination.to_json()
    result["limits"] = [limit["quantity"] for limit in result["quantityLimits"]]
    return result


def mismatches(expect: dict[str, Any], result: dict[str, Any], as_of: date = AS_OF) -> list[str]:
    """What differs between a case's expectations and the whole determination:
    outcome, every section list, the missing questions, the documents left to
    a pharmacist to read, the authorization dates and the pend reason. A list
    a case does not state is expected empty; an approval must state its months
    and end date (the start is the evaluation date); quantities are compared
    when a case states them."""
    found = {
        "outcome": result["outcome"],
        "unmet": result["sections"]["unmet"],
        "missing": result["sections"]["missing"],
        "investigational": result["sections"]["investigational"],
        "review": result["sections"]["review"],
        "excluded": result["sections"]["excluded"],
        "missingQuestions": result["missingQuestions"],
        "reviewDocuments": result.get("reviewDocuments", []),
        "pendReason": result["pendReason"],
        "months": (result["authorization"] or {}).get("months"),
        "start": (result["authorization"] or {}).get("start"),
        "end": (result["authorization"] or {}).get("end"),
        # compared only when a case states them
        "limits": result["limits"],
        "approvedQuantity": (result.get("quantity") or {}).get("approved"),
        "requestedQuantity": (result.get("quantity") or {}).get("requested"),
    }
    problems = []
    approved = expect["outcome"] == "approved"
    if approved and not {"months", "end"} <= expect.keys():
        problems.append("an approval must state its months and end date")
    pended = expect["outcome"] == "pended"
    defaults: dict[str, Any] = {
        "unmet": [],
        "missing": [],
        "investigational": [],
        "review": [],
        "excluded": [],
        "missingQuestions": [],
        "reviewDocuments": [],
        "pendReason": (
            ("review" if expect.get("review") else "missing-information") if pended else None
        ),
        "months": None,
        "start": as_of if approved else None,
        "end": None,
    }
    for key, wanted in {**defaults, **expect}.items():
        if isinstance(wanted, date):
            wanted = wanted.isoformat()
        if found[key] != wanted:
            problems.append(f"{key}: expected {wanted!r}, got {found[key]!r}")
    return problems
