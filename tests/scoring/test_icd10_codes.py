"""An ICD-10-CM answer checked as a code: a string question with `format:
icd-10-cm` takes a code in the CMS format and refuses anything else when the
response is received — an input error naming the item (a 4xx
OperationOutcome at the API), never a denial. The codes are the case table
tests/cases/icd10_codes.yaml, on the constructs fixture's icd10."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from policies.model import Question
from qpackage.catalog import score_json
from scoring import InvalidInput
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, folder_catalog, package_for
from tests.support.paths import FIXTURES

FOLDER = "fixtures/policies/constructs"


def response(code: str) -> dict[str, Any]:
    package = package_for(folder_catalog(FOLDER), "fixture-class", "initial", "alpha")
    return fill(package, {**base_answers("fixture-class", "alpha_adjuvant"), "icd10": code})


@pytest.mark.cases("icd10_codes.yaml")
def test_an_icd_10_cm_answer_is_checked_as_a_code(case: dict[str, Any]) -> None:
    body = json.dumps(response(case["code"]))
    if case["ok"]:
        determination = score_json(folder_catalog(FOLDER), body, AS_OF)
        assert determination.outcome == "approved"
        return
    with pytest.raises(InvalidInput) as refused:
        score_json(folder_catalog(FOLDER), body, AS_OF)
    said = [issue.diagnostics for issue in refused.value.issues]
    assert said == [
        f"item Setting.icd10: {case['code']!r} is not an ICD-10-CM code (a letter, a digit,"
        " a letter or digit, then up to four letters or digits after an optional dot: C56.9,"
        " C569, S72.001A)"
    ]


def test_a_malformed_code_is_a_4xx_operation_outcome(tmp_path: Path) -> None:
    app = create_app(
        Settings(database=str(tmp_path / "db.sqlite3"), policies=str(FIXTURES / "constructs")),
        clock=lambda: AS_OF,
    )
    with authorize(TestClient(app)) as client:
        sent = [
            client.post(
                "/QuestionnaireResponse/$evaluate",
                content=json.dumps(response(code)),
                headers={"Content-Type": "application/fhir+json"},
            )
            for code in ("C56.9", "C5.69")
        ]
    assert sent[0].status_code == 201, sent[0].text
    assert 400 <= sent[1].status_code < 500, sent[1].text
    outcome = sent[1].json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "'C5.69' is not an ICD-10-CM code" in outcome["issue"][0]["diagnostics"]


def test_a_format_on_a_question_that_is_no_string_is_refused() -> None:
    with pytest.raises(ValueError, match="a choice question cannot have a `format`"):
        Question.model_validate(
            {
                "name": "dx",
                "type": "choice",
                "text": "Diagnosis",
                "format": "icd-10-cm",
                "options": [{"code": "a", "display": "A"}],
            }
        )
