"""The case tables and running a clinical case through the public path.

A table is read once per run (``table``, YAML with the C loader), and only
when a test that uses it is collected: ``tests/conftest.py`` parametrizes a
test marked ``@pytest.mark.cases(NAME)`` from here, so importing a test
module reads no YAML. ``cases("scoring")`` is every clinical case: the
worked examples beside each bundled policy (``policies/*.examples.yaml``) and
beside each fixture policy (``tests/fixtures/policies/*/*.examples.yaml``,
whose folder the case names as ``folder``), read by the policy loader, each
case given its answers: the file's named answer set (``base``) with ``set``
and ``unset`` applied, and its evaluation date (``as_of``).

A clinical case runs as a prescriber's office would send it: the
Questionnaire built, a QuestionnaireResponse filled, scored, and compared
with what the case expects (:func:`qpackage.examples.mismatches`, the
comparison ``dtr check`` runs)."""

from __future__ import annotations

import copy
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.examples import Examples
from policies.loader import parse_examples
from qpackage.catalog import Catalog, score_json
from qpackage.examples import mismatches as example_mismatches
from qpackage.examples import observed
from scoring.fill import fill
from tests.support.paths import CASES, FIXTURES, ROOT, TESTS

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
    """Every worked examples file: the bundled policies', then the fixtures'."""
    bundled = sorted((ROOT / "policies").glob("*.examples.yaml"))
    return [*bundled, *sorted(FIXTURES.glob("*/*.examples.yaml"))]


def case_folder(path: Path) -> str | None:
    """The fixture policy folder of an examples file, relative to tests/
    (None for a bundled policy's)."""
    return None if path.parent == ROOT / "policies" else path.parent.relative_to(TESTS).as_posix()


@cache
def examples_of(path: Path) -> Examples:
    """A worked examples file as the policy loader reads it, once."""
    return parse_examples(path.read_text(encoding="utf-8"), str(path))


@cache
def _scoring_cases() -> tuple[tuple[str, dict[str, Any]], ...]:
    cases = []
    for path in case_files():
        examples = examples_of(path)
        for example in examples.cases:
            case = {
                **example.model_dump(by_alias=True, exclude_unset=True, exclude={"expect"}),
                "expect": example.expect.stated(),
                "as_of": examples.as_of_for(example),
                "policy": examples.policy,
                "folder": case_folder(path),
                "answers": examples.answers(example),
            }
            cases.append((f"{examples.policy}: {example.name}", case))
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
    """A named answer set of a policy's worked examples (``bases`` in
    <policy file>.examples.yaml)."""
    for path in case_files():
        examples = examples_of(path)
        if examples.policy == policy:
            return copy.deepcopy(examples.bases[base])
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
    return observed(score_json(catalog, response, case.get("as_of", AS_OF)))


def score_every_case_and_example() -> None:
    """Every clinical case and every example response scored through the
    public path (for a test that watches what the scorer does on them)."""
    for param in load_scoring_cases():
        (case,) = param.values
        catalog = folder_catalog(case["folder"]) if case.get("folder") else bundled_catalog()
        package = package_for(catalog, case["policy"], case["request"], case.get("drug"))
        score_json(catalog, fill(package, case["answers"]), case.get("as_of", AS_OF))
    for path in sorted((ROOT / "examples").glob("*.json")):
        score_json(bundled_catalog(), path.read_bytes(), AS_OF)


def mismatches(expect: dict[str, Any], result: dict[str, Any], as_of: date = AS_OF) -> list[str]:
    """What differs between a case's expectations and the whole
    determination: the comparison ``dtr check`` makes of a worked example."""
    return example_mismatches(expect, result, as_of)
