"""The outputs of one determination: ClaimResponse, coverage-information, notice.

Every expectation is written here from the policy (the section ids and their
text as policies/eocco329.yaml and policies/mn-dhs-mekinist.yaml write them,
the lengths and limits the policy texts state), never read back from the
determination under test.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from qpackage.catalog import Catalog
from review.notice import render_notice
from scoring import Determination, score
from scoring.fhir_outputs import claim_response, coverage_information
from scoring.fill import fill
from tests.support.cases import AS_OF, base_answers, package_for

EOCCO_SECTIONS = "https://pa-dtr.example.org/fhir/policies/eocco329/sections"
X12_306 = "https://codesystem.x12.org/005010/306"

# section texts as policies/eocco329.yaml writes them (from the EOCCO329 text)
QL_TEXT = (
    "avutometinib (Avmapki) and defactinib (Fakzynja) Co-Pack, 0.8 mg capsules/200 mg"
    " tablets: 66 capsules and tablets/28 days"
)
I_A_TEXT = "The member is 18 years of age or older"
I_B_TEXT = "The medication is prescribed by, or in consultation with, an oncologist"
I_C_TEXT = "The medication will not be used in combination with other oncology therapy"
II_A_TEXT = (
    "Avutometinib (Avmapki) and defactinib (Fakzynja) Co-Pack is used in combination with"
    " another oncology therapy"
)
II_C_TEXT = "Non-small cell lung cancer"
I_D_TEXT = "A diagnosis of low-grade serous ovarian cancer (LGSOC) when the following are met"
EOCCO_LIMIT = (
    "Quantity limit: 66 capsules and tablets per 28 days"
    " (avutometinib 0.8 mg capsules and defactinib 200 mg tablets (Co-Pack))"
)

INITIAL_MET = base_answers("eocco329", "initial_met")
NOT_LGSOC = base_answers("eocco329", "not_lgsoc")

# name → (request, answers); each case changes only sections of the policy
# that the case's expectations below name
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "approved": ("initial", INITIAL_MET),
    "under 18": ("initial", {**INITIAL_MET, "birth_date": "2008-11-25"}),
    "three failures": (
        "initial",
        {
            **INITIAL_MET,
            "requested_quantity": 132,  # above 66 per 28 days
            "birth_date": "2009-06-01",  # 17 on the evaluation date
            "prescriber_oncologist": False,
            "oncologist_consulted": False,
        },
    ),
    "non-small cell lung cancer": ("initial", {**NOT_LGSOC, "diagnosis": "II.C"}),
    "with another oncology therapy": ("initial", {**INITIAL_MET, "combination_therapy": True}),
    "date of birth not given": (
        "initial",
        {k: v for k, v in INITIAL_MET.items() if k != "birth_date"},
    ),
    "consultation not answered": (
        "initial",
        {**INITIAL_MET, "prescriber_oncologist": False, "oncologist_consulted": None},
    ),
}


def decided(catalog: Catalog, name: str) -> tuple[Determination, dict[str, Any]]:
    request, answers = CASES[name]
    package = package_for(catalog, "eocco329", request)
    response = fill(package, {k: v for k, v in answers.items() if v is not None})
    return score(package, response, AS_OF), response


def coding(code: str, display: str) -> dict[str, str]:
    return {"system": EOCCO_SECTIONS, "code": code, "display": display}


def review_action(claim: dict[str, Any]) -> str:
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    (coded,) = action["valueCodeableConcept"]["coding"]
    assert coded["system"] == X12_306
    return str(coded["code"])


def notes(claim: dict[str, Any]) -> list[str]:
    return [note["text"] for note in claim.get("processNote", [])]


def coverage(determination: Determination, response: dict[str, Any]) -> dict[str, Any]:
    extension = coverage_information(determination, "d1")
    QuestionnaireResponse.model_validate({**response, "extension": [extension]})
    return extension


def covered(extension: dict[str, Any]) -> str:
    return next(e["valueCode"] for e in extension["extension"] if e["url"] == "covered")


def reason_codings(extension: dict[str, Any]) -> list[dict[str, str]]:
    return [
        coded
        for e in extension["extension"]
        if e["url"] == "reason"
        for coded in e["valueCodeableConcept"]["coding"]
    ]


def test_approval(catalog: Catalog) -> None:
    determination, response = decided(catalog, "approved")
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    assert review_action(claim) == "A1"
    assert claim["outcome"] == "complete"
    assert claim["disposition"] == "Approved"
    assert claim["preAuthRef"] == "d1"
    # EOCCO329: initial authorization six months, through the day before the anniversary
    assert claim["preAuthPeriod"] == {"start": "2026-11-24", "end": "2027-05-23"}
    assert "reason" not in claim["item"][0]["adjudication"][0]
    eligible = claim["item"][0]["adjudication"][1]
    assert eligible["category"]["coding"][0]["code"] == "eligible"
    assert eligible["value"] == 66
    assert notes(claim) == [
        "Quantity approved: 66 capsules and tablets per 28 days (requested 66)",
        EOCCO_LIMIT,
    ]
    extension = coverage(determination, response)
    assert covered(extension) == "covered"
    assert reason_codings(extension) == []


def test_denial_citing_one_section(catalog: Catalog) -> None:
    determination, response = decided(catalog, "under 18")
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    assert review_action(claim) == "A3"
    assert claim["outcome"] == "complete"
    assert claim["disposition"] == "Denied: criteria not met"
    assert "preAuthPeriod" not in claim and "preAuthRef" not in claim
    assert claim["item"][0]["adjudication"][0]["reason"] == {
        "coding": [coding("I.A", I_A_TEXT)],
        "text": f"Not met: I.A: {I_A_TEXT}",
    }
    assert notes(claim) == [f"Not met: I.A: {I_A_TEXT}", EOCCO_LIMIT]
    extension = coverage(determination, response)
    assert covered(extension) == "not-covered"
    assert reason_codings(extension) == [coding("I.A", I_A_TEXT)]


def test_denial_cites_every_failure_in_policy_order(catalog: Catalog) -> None:
    determination, response = decided(catalog, "three failures")
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    assert review_action(claim) == "A3"
    # the first reason on the adjudication; all of them in the notes
    assert claim["item"][0]["adjudication"][0]["reason"]["coding"] == [coding("QL", QL_TEXT)]
    assert notes(claim) == [
        f"Not met: QL: {QL_TEXT}",
        f"Not met: I.A: {I_A_TEXT}",
        f"Not met: I.B: {I_B_TEXT}",
        EOCCO_LIMIT,
    ]
    extension = coverage(determination, response)
    assert covered(extension) == "not-covered"
    assert reason_codings(extension) == [
        coding("QL", QL_TEXT),
        coding("I.A", I_A_TEXT),
        coding("I.B", I_B_TEXT),
    ]


def test_investigational_diagnosis(catalog: Catalog) -> None:
    """Non-small cell lung cancer: II.C (investigational), and I.D (LGSOC) not met."""
    determination, response = decided(catalog, "non-small cell lung cancer")
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    assert review_action(claim) == "A3"
    assert claim["outcome"] == "complete"
    assert claim["disposition"] == "Denied: investigational use"
    assert "preAuthPeriod" not in claim
    assert claim["item"][0]["adjudication"][0]["reason"] == {
        "coding": [coding("II.C", II_C_TEXT)],
        "text": f"Investigational: II.C: {II_C_TEXT}",
    }
    assert notes(claim) == [
        f"Investigational: II.C: {II_C_TEXT}",
        f"Not met: I.D: {I_D_TEXT}",
        EOCCO_LIMIT,
    ]
    extension = coverage(determination, response)
    assert covered(extension) == "not-covered"
    assert reason_codings(extension) == [coding("II.C", II_C_TEXT), coding("I.D", I_D_TEXT)]


def test_investigational_use_also_cites_the_criterion_it_fails(catalog: Catalog) -> None:
    """With another oncology therapy: II.A (investigational) and I.C (not met)."""
    determination, response = decided(catalog, "with another oncology therapy")
    claim = claim_response(determination, "d1")
    assert review_action(claim) == "A3"
    assert notes(claim) == [
        f"Investigational: II.A: {II_A_TEXT}",
        f"Not met: I.C: {I_C_TEXT}",
        EOCCO_LIMIT,
    ]
    assert reason_codings(coverage(determination, response)) == [
        coding("II.A", II_A_TEXT),
        coding("I.C", I_C_TEXT),
    ]


def test_pended_for_missing_information(catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    birth_date = package.link_of["birth_date"]
    determination, response = decided(catalog, "date of birth not given")
    claim = claim_response(determination, "d1")
    ClaimResponse.model_validate(claim)
    assert review_action(claim) == "A4"
    assert claim["outcome"] == "queued"
    assert claim["disposition"] == "Pended: information missing"
    assert "preAuthPeriod" not in claim
    assert notes(claim) == [
        f"Missing information for I.A: {I_A_TEXT}",
        EOCCO_LIMIT,
        f"Answer: {birth_date}",
    ]
    extension = coverage(determination, response)
    assert covered(extension) == "conditional"
    assert reason_codings(extension) == [coding("I.A", I_A_TEXT)]


def test_notice_names_every_unmet_section_with_its_text(catalog: Catalog) -> None:
    determination, _ = decided(catalog, "three failures")
    text = render_notice(determination, "text")
    html = render_notice(determination, "html")
    assert "DECISION: Denied — criteria not met" in text
    listed = text.split("\nCriteria not met: ", 1)[1].split("\n\n", 1)[0]
    assert [line for line in listed.splitlines() if line.startswith("  - ")] == [
        f"  - QL: {QL_TEXT}",
        f"  - I.A: {I_A_TEXT}",
        f"  - I.B: {I_B_TEXT}",
    ]
    for section in ("QL", "I.A", "I.B"):
        assert f"Section {section}:" in html
    assert "Section I.C:" not in html
    assert "66 capsules and tablets per 28 days" in text
    assert "Authorized from" not in text


def test_notice_of_a_pended_request_lists_questions(catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    consulted = package.link_of["oncologist_consulted"]
    determination, _ = decided(catalog, "consultation not answered")
    text = render_notice(determination, "text")
    assert "DECISION: Pended — information missing" in text
    listed = text.split("Answer these questions on the form and send it again:\n", 1)[1]
    # the question's text as the policy writes it, and only that question
    assert listed.split("\n\n", 1)[0].splitlines() == [
        "  - Is the medication prescribed in consultation with an oncologist?"
    ]
    assert consulted not in text


def test_notice_of_an_approval_gives_the_period(catalog: Catalog) -> None:
    package = package_for(catalog, "mn-dhs-mekinist", "initial")
    response = fill(package, base_answers("mn-dhs-mekinist", "melanoma_met"))
    determination = score(package, response, AS_OF)
    text = render_notice(determination, "text")
    assert "DECISION: Approved" in text
    # the page states no length: the MHCP default of 12 months, marked assumed
    assert "Authorized from November 24, 2026 through November 23, 2027 (12 months)." in text
    assert (
        "Length of authorization (the policy states none): The criteria page states no length"
        " of authorization; the MHCP default for a drug prior authorization (up to 12 months)"
        " is applied."
    ) in text
    # the 2 mg tablets were requested: their limit, 30 per 30 days, and not the 0.5 mg one
    assert "  - Mekinist (trametinib) 2 mg tablets: 30 tablets per 30 days" in text
    assert "0.5 mg tablets" not in text
    claim = claim_response(determination, "d2")
    assert claim["preAuthPeriod"] == {"start": "2026-11-24", "end": "2027-11-23"}
    assert "Quantity limit: 30 tablets per 30 days (Mekinist (trametinib) 2 mg tablets)" in notes(
        claim
    )
