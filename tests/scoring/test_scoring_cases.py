"""The worked examples of every policy (policies/*.examples.yaml and the
fixtures' tests/fixtures/policies/*/*.examples.yaml) through the public path."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml

from qpackage.catalog import Catalog
from tests.support.cases import (
    AS_OF,
    case_files,
    case_folder,
    folder_catalog,
    load_scoring_cases,
    mismatches,
    run_case,
)
from tests.support.paths import CASES


@pytest.mark.cases("scoring")
def test_case(catalog: Catalog, case: dict[str, Any]) -> None:
    as_of = case.get("as_of", AS_OF)
    assert mismatches(case["expect"], run_case(catalog, case), as_of) == []


@pytest.mark.cases("scoring")
def test_every_determination_is_valid_fhir(catalog: Catalog, case: dict[str, Any]) -> None:
    """What the service emits for each case — the PAS ClaimResponse and the
    CRD coverage-information — is valid R4 (checked here, not on every
    request: the builders are ours and this covers every outcome)."""
    from fhir.resources.R4B.claimresponse import ClaimResponse
    from fhir.resources.R4B.extension import Extension

    from qpackage.catalog import score_json
    from scoring.fhir_outputs import claim_response, coverage_information
    from scoring.fill import fill
    from tests.support.cases import package_for

    cases = folder_catalog(case["folder"]) if case.get("folder") else catalog
    package = package_for(cases, case["policy"], case["request"], case.get("drug"))
    determination = score_json(cases, fill(package, case["answers"]), case.get("as_of", AS_OF))
    ClaimResponse.model_validate(claim_response(determination, "record-1"))
    Extension.model_validate(coverage_information(determination, "record-1"))


def test_a_deliberately_wrong_case_fails(catalog: Catalog) -> None:
    """The comparison can fail: the all-met case, expected as a denial citing I.A."""
    case = next(c.values[0] for c in load_scoring_cases() if "every initial criterion" in c.id)
    wrong = {"outcome": "denied", "unmet": ["I.A"]}
    problems = mismatches(wrong, run_case(catalog, case))
    assert "outcome: expected 'denied', got 'approved'" in problems
    assert "unmet: expected ['I.A'], got []" in problems


def test_tables_cover_every_section(catalog: Catalog) -> None:
    """Each policy section is exercised by at least one case; each table is large enough."""
    for path in case_files():
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
        folder = case_folder(path)
        source = folder_catalog(folder) if folder else catalog
        policy = source.policies[table["policy"]]
        exercised = Counter(s for case in table["cases"] for s in case["exercises"])
        sections = {
            section
            for package in source.current.values()
            if package.policy is policy
            for section in package.index.section_text
        }
        assert sections - set(exercised) == set(), path.name
        assert set(exercised) - sections == set(), path.name
    # larger tables where a policy has many sections; every other table at least 10
    minimum = {"eocco329": 40}
    for path in case_files():
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert len(table["cases"]) >= minimum.get(table["policy"], 10), path.name


def test_clinical_cases_live_beside_their_policy() -> None:
    """A clinical case table left in tests/cases/ would be read by nothing:
    a policy's cases are its worked examples, beside it."""
    stray = sorted(p.name for p in CASES.glob("scoring_*.yaml"))
    assert stray == [], f"move {stray} beside its policy as <policy file>.examples.yaml"
