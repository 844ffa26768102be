"""The case tables and running a clinical case through the public path.

A table is read once per run (``table``, YAML with the C loader), and only
when a test that uses it is collected: ``tests/conftest.py`` parametrizes a
test marked ``@pytest.mark.cases(NAME)`` from here, so importing a test
module reads no YAML. ``cases("scoring")`` is every clinical table
(``scoring_*.yaml``), each case given its answers: the table's named answer
set (``base``) with ``set`` and ``unset`` applied.

A clinical case runs as a prescriber's office would send it: the
Questionnaire built, a QuestionnaireResponse filled, scored, and compared
with what the case expects."""

from __future__ import annotations

import copy
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from qpackage.catalog import Catalog, score_json
from scoring.fill import fill
from tests.support.paths import CASES, TESTS

AS_OF = date(2026, 11, 24)


@cache
def bundled_catalog() -> Catalog:
    """The bundled policies' catalog, built once per run (the ``catalog``
    fixture; module-level users such as the fuzzer's strategies share it)."""
    return Catalog.bundled()


@cache
def folder_catalog(folder: str) -> Catalog:
    """The catalog of a fixture policy folder (a table's ``folder``, relative
    to tests/), built once: policies that are not bundled."""
    return Catalog.from_folder(TESTS / folder)


@cache
def _read(name: str) -> Any:
    return yaml.load((CASES / name).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


def table(name: str) -> Any:
    """A case table as YAML data: read once, a copy each call (a test may
    change what it is given without changing another test's table)."""
    return copy.deepcopy(_read(name))


def case_files() -> list[Path]:
    return sorted(CASES.glob("scoring_*.yaml"))


@cache
def _scoring_cases() -> tuple[tuple[str, dict[str, Any]], ...]:
    cases = []
    for path in case_files():
        source = _read(path.name)
        for case in source["cases"]:
            base = case.get("base")
            answers = {} if base == "none" else dict(source["bases"][base])
            answers.update(case.get("set") or {})
            for name in case.get("unset") or []:
                answers.pop(name, None)
            case = {
                **case,
                "policy": source["policy"],
                "folder": source.get("folder"),
                "answers": answers,
            }
            cases.append((f"{source['policy']}: {case['name']}", case))
    return tuple(cases)


def load_scoring_cases() -> list[Any]:
    """Every clinical case as a pytest param, id ``policy: name``."""
    # a copy per call: a test may change its case without changing another's
    return [pytest.param(copy.deepcopy(case), id=name) for name, case in _scoring_cases()]


def cases(name: str) -> list[Any]:
    """The params of a marked test: ``scoring`` (every clinical table) or a
    table file, a list of cases or a mapping holding them under ``cases``;
    each case named by its ``name``."""
    if name == "scoring":
        return load_scoring_cases()
    found = _read(name)
    rows = found["cases"] if isinstance(found, dict) else found
    return [pytest.param(copy.deepcopy(case), id=case["name"]) for case in rows]


def base_answers(policy: str, base: str) -> dict[str, Any]:
    """A named answer set of a case table (``bases`` in scoring_<policy>.yaml)."""
    for path in case_files():
        source = _read(path.name)
        if source["policy"] == policy:
            return copy.deepcopy(source["bases"][base])
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
