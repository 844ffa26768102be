"""The rulings that send a request to a pharmacist instead of approving it,
through the service and the CLI: Cotellic's BRAF result is read by a person
(the report attached may contradict the "yes"), and WHA Mektovi's daily
dose above the label goes to review while a dose of 0 or below pends for
the dose — never a 4xx, never an approval. The worked examples
(policies/*.examples.yaml) hold the clinical rows; these follow the same
requests to the queue, the case view and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dtr.cli import main
from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.callers import People
from tests.support.cases import base_answers, package_for

WILD_TYPE = "BRAF V600 mutation test: NOT DETECTED (wild-type)"


def cotellic(catalog: Catalog, rid: str, **change: Any) -> dict[str, Any]:
    """An MN Cotellic initial request meeting every criterion, the BRAF
    result attached."""
    answers = {**base_answers("mn-dhs-cotellic", "initial_met"), **change}
    return fill(package_for(catalog, "mn-dhs-cotellic", "initial"), answers, response_id=rid)


def mektovi(catalog: Catalog, rid: str, dose: float) -> dict[str, Any]:
    """A WHA Mektovi initial request meeting every criterion, 168 tablets per
    28 days, at ``dose`` mg a day."""
    answers = {**base_answers("wha-mektovi", "melanoma_step_met"), "requested_daily_dose": dose}
    return fill(package_for(catalog, "wha-mektovi", "initial"), answers, response_id=rid)


def test_a_wild_type_report_behind_a_yes_goes_to_a_pharmacist_who_sees_it(
    people: People, catalog: Catalog
) -> None:
    """MN Cotellic Approval.3: "mutation detected" with a report titled NOT
    DETECTED is not approved; the pharmacist's case names the criterion as
    for review and shows the report to read."""
    report = {"contentType": "application/pdf", "title": WILD_TYPE, "url": "Binary/braf-wt"}
    created = people.submit(cotellic(catalog, "wild-type", document_approval_3=report))
    assert created.status_code == 201, created.text
    assert created.json()["outcome"] == "queued"  # not complete: nothing approved
    rid = created.json()["id"]
    found = people.office.get(f"/determinations/{rid}").json()
    assert (found["outcome"], found["pendReason"]) == ("pended", "review")
    assert found["sections"]["review"] == ["Approval.3"]
    assert found["reviewDocuments"] == ["Approval.3.documentation"]
    assert found["authorization"] is None

    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    status = {c["section"]: c["status"] for c in case["criteria"]}
    assert status["Approval.3"] == "for review"
    assert status["Approval.4"] == "met"
    assert [a["title"] for a in case["attachments"]] == [WILD_TYPE]
    assert case["recommendation"]["reviewDocuments"] == ["Approval.3.documentation"]
    notice = people.office.get(f"/determinations/{rid}/notice?format=text").text
    assert "Approval.3" in notice and WILD_TYPE in notice


def test_the_pharmacist_approves_after_reading_the_report(people: People, catalog: Catalog) -> None:
    """A detected result is still read first; the pharmacist's approval gives
    the authorization and leaves nothing to read."""
    rid = people.submit(cotellic(catalog, "detected")).json()["id"]
    assert people.office.get(f"/determinations/{rid}").json()["pendReason"] == "review"
    decided = people.decide(rid, action="approve", rationale="The report shows V600E.")
    assert decided.status_code == 200, decided.text
    found = people.office.get(f"/determinations/{rid}").json()
    assert found["outcome"] == "approved" and "reviewDocuments" not in found
    assert found["authorization"]["end"] == "2027-11-23"


@pytest.mark.parametrize(
    ("dose", "outcome", "pend_reason", "review", "missing_questions"),
    [
        (90, "approved", None, [], []),
        (900, "pended", "review", ["QL"], []),
        (0, "pended", "missing-information", [], ["QL.requested_daily_dose"]),
        (-5, "pended", "missing-information", [], ["QL.requested_daily_dose"]),
    ],
)
def test_a_mektovi_dose_above_the_label_or_not_a_dose_is_never_approved(
    people: People,
    catalog: Catalog,
    dose: float,
    outcome: str,
    pend_reason: str | None,
    review: list[str],
    missing_questions: list[str],
) -> None:
    """WHA Mektovi QL: 900 mg a day with 168 tablets goes to a pharmacist
    citing QL; 0 and -5 mg are answered (201, not a 4xx) and pend asking for
    the dose."""
    created = people.submit(mektovi(catalog, f"dose-{dose}", dose))
    assert created.status_code == 201, created.text
    found = people.office.get(f"/determinations/{created.json()['id']}").json()
    assert (found["outcome"], found["pendReason"]) == (outcome, pend_reason)
    assert found["sections"]["review"] == review
    assert found["missingQuestions"] == missing_questions


def test_dtr_score_pends_a_negative_dose_naming_the_question(
    catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "negative-dose.json"
    path.write_text(json.dumps(mektovi(catalog, "negative", -5)), encoding="utf-8")
    assert main(["score", str(path), "--as-of", "2026-11-24"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["outcome"] == "pended"
    assert printed["missingQuestions"] == ["QL.requested_daily_dose"]
