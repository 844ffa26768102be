"""The outputs of one determination: ClaimResponse, coverage-information, notice."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from scoring import Catalog, Determination, score
from scoring.fhir_outputs import claim_response, coverage_information
from scoring.fill import fill
from scoring.notice import render_notice
from tests.scoring_cases import load_scoring_cases, package_for

AS_OF = date(2026, 11, 24)
CASES = {c.values[0]["name"]: c.values[0] for c in load_scoring_cases()}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.bundled()


def decided(catalog: Catalog, name: str) -> tuple[Determination, dict]:  # type: ignore[type-arg]
    case = CASES[name]
    package = package_for(catalog, case["policy"], case["request"])
    response = fill(package, case["answers"])
    return score(package, response, AS_OF), response


@pytest.mark.parametrize(
    ("name", "review", "outcome", "covered"),
    [
        ("every initial criterion met", "A1", "complete", "covered"),
        ("several failures at once, every one cited", "A3", "complete", "not-covered"),
        ("non-small cell lung cancer is investigational", "A3", "complete", "not-covered"),
        ("date of birth not given", "A4", "queued", "conditional"),
    ],
)
def test_claim_response_and_coverage_information(
    catalog: Catalog, name: str, review: str, outcome: str, covered: str
) -> None:
    determination, response = decided(catalog, name)
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    assert action["valueCodeableConcept"]["coding"][0]["code"] == review
    assert claim["outcome"] == outcome
    assert ("preAuthPeriod" in claim) == (review == "A1")
    notes = " ".join(n["text"] for n in claim.get("processNote", []))
    for section in [*determination.unmet, *determination.investigational]:
        assert f": {section}:" in f": {notes}".replace("Not met: ", ": ").replace(
            "Investigational: ", ": "
        )
    extension = coverage_information(determination, "d1")
    values = {e["url"]: e.get("valueCode") for e in extension["extension"]}
    assert values["covered"] == covered
    annotated = {**response, "extension": [extension]}
    QuestionnaireResponse.model_validate(annotated)


def test_notice_names_every_unmet_section_with_its_text(catalog: Catalog) -> None:
    determination, _ = decided(catalog, "several failures at once, every one cited")
    text = render_notice(determination, "text")
    html = render_notice(determination, "html")
    assert "DECISION: Denied — criteria not met" in text
    for section in determination.unmet:
        line = f"  - {section}: {determination.section_text[section]}"
        assert line in text
        assert f"<code>{section}</code>" in html
    assert "66 capsules and tablets per 28 days" in text


def test_notice_of_a_pended_request_lists_questions(catalog: Catalog) -> None:
    determination, _ = decided(catalog, "platinum intolerance not answered")
    text = render_notice(determination, "text")
    assert "Information missing (answer these and resubmit):" in text
    assert "I.D.3.platinum_intolerant: Was platinum-based chemotherapy not tolerated" in text


def test_notice_of_an_approval_gives_the_period(catalog: Catalog) -> None:
    determination, _ = decided(catalog, "melanoma, single agent")
    text = render_notice(determination, "text")
    assert "Authorized from 2026-11-24 through 2027-11-23 (12 months)." in text
    # an assumed length gives its real reason, from the policy data
    assert "Length of authorization (the policy states none): The criteria page states no" in text
