"""Bad input gets an OperationOutcome naming the problem — never a traceback,
never a determination. Each case edits a valid response built with `fill`."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from scoring import Catalog, InvalidInput, score_json
from scoring.fill import fill
from tests.scoring_cases import base_answers, package_for

AS_OF = date(2026, 11, 24)
LGSOC = {**base_answers("eocco329", "not_lgsoc"), "diagnosis": "I.D", "figo_stage": "III"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.bundled()


@pytest.fixture()
def response(catalog: Catalog) -> dict[str, Any]:
    return fill(package_for(catalog, "eocco329", "initial"), LGSOC)


def find(resource: dict[str, Any], link_id: str) -> dict[str, Any]:
    stack = list(resource["item"])
    while stack:
        item = stack.pop()
        if item["linkId"] == link_id:
            return item
        stack.extend(item.get("item", []))
    raise KeyError(link_id)


def refused(catalog: Catalog, body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        score_json(catalog, body, AS_OF)
    outcome = caught.value.outcome()
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"] and all(i["severity"] == "error" for i in outcome["issue"])
    return caught.value


def messages(error: InvalidInput) -> str:
    return " | ".join(issue.diagnostics for issue in error.issues)


def test_valid_response_scores(catalog: Catalog, response: dict[str, Any]) -> None:
    assert score_json(catalog, json.dumps(response), AS_OF).outcome == "pended"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"resourceType": "QuestionnaireResponse",', "malformed JSON at line 1, column 42"),
        ("[1, 2]", "must be a JSON object"),
        (b'{"x": "\xc3\x28"}', "not UTF-8"),
    ],
)
def test_malformed_body(catalog: Catalog, body: Any, expected: str) -> None:
    error = refused(catalog, body)
    assert error.status == 400
    assert expected in messages(error)


def test_other_resource_type(catalog: Catalog) -> None:
    error = refused(catalog, {"resourceType": "Patient"})
    assert "expected a QuestionnaireResponse, got resourceType 'Patient'" in messages(error)


def test_structure_error_names_the_element(catalog: Catalog, response: dict[str, Any]) -> None:
    response["item"][0]["item"][0]["answer"] = {"valueInteger": 66}  # not a list
    error = refused(catalog, response)
    assert error.issues[0].code == "structure"
    assert "item" in messages(error)


def test_questionnaire_not_named(catalog: Catalog, response: dict[str, Any]) -> None:
    del response["questionnaire"]
    assert "must name its Questionnaire" in messages(refused(catalog, response))


def test_response_to_another_questionnaire(catalog: Catalog, response: dict[str, Any]) -> None:
    response["questionnaire"] = "https://payer.example.com/Questionnaire/other|1"
    error = refused(catalog, response)
    assert "no Questionnaire https://payer.example.com/Questionnaire/other is known" in messages(
        error
    )


def test_unknown_version(catalog: Catalog, response: dict[str, Any]) -> None:
    response["questionnaire"] = response["questionnaire"].replace("|1.0.0-r2", "|0.9")
    assert "has no version 0.9 (known: 1.0.0-r1, 1.0.0-r2)" in messages(refused(catalog, response))


def test_version_missing(catalog: Catalog, response: dict[str, Any]) -> None:
    response["questionnaire"] = response["questionnaire"].split("|")[0]
    assert "must name the version" in messages(refused(catalog, response))


def test_answers_meant_for_the_renewal_form(catalog: Catalog, response: dict[str, Any]) -> None:
    renewal = fill(package_for(catalog, "eocco329", "renewal"), {"started_on_samples": False})
    response["item"].append(renewal["item"][0])
    assert "unknown linkId 'Renewal.II'" in messages(refused(catalog, response))


def test_unknown_link_id(catalog: Catalog, response: dict[str, Any]) -> None:
    find(response, "I.A")["item"].append({"linkId": "I.A.weight", "answer": [{"valueInteger": 60}]})
    assert "unknown linkId 'I.A.weight'" in messages(refused(catalog, response))


def test_item_out_of_place(catalog: Catalog, response: dict[str, Any]) -> None:
    moved = find(response, "I.A")["item"].pop()
    response["item"].append(moved)
    assert "item I.A.birth_date belongs inside group I.A" in messages(refused(catalog, response))


@pytest.mark.parametrize(
    ("link_id", "answer", "expected"),
    [
        ("QL.requested_quantity", {"valueString": "66"}, "expected valueInteger, got valueString"),
        (
            "QL.requested_quantity",
            {"valueDecimal": 66.5},
            "expected valueInteger, got valueDecimal",
        ),
        ("I.B.prescriber_oncologist", {"valueCoding": {"code": "Y"}}, "expected valueBoolean"),
        ("I.A.birth_date", {"valueBoolean": True}, "expected valueDate, got valueBoolean"),
        (
            "I.D.1.figo_stage",
            {"valueCoding": {"system": "http://snomed.info/sct", "code": "III"}},
            "'III' from 'http://snomed.info/sct' is not one of its answer options",
        ),
        (
            "I.D.1.figo_stage",
            {
                "valueCoding": {
                    "system": "https://pa-dtr.example.org/fhir/policies/eocco329/codes",
                    "code": "V",
                }
            },
            "'V' from",
        ),
        ("QL.requested_quantity", {"valueInteger": 0}, "0 is below the minimum 1"),
    ],
)
def test_wrong_answer(
    catalog: Catalog, response: dict[str, Any], link_id: str, answer: dict[str, Any], expected: str
) -> None:
    find(response, link_id)["answer"] = [answer]
    error = refused(catalog, response)
    assert link_id in messages(error)
    assert expected in messages(error)


def test_two_answers_to_a_single_answer_item(catalog: Catalog, response: dict[str, Any]) -> None:
    find(response, "I.C.combination_therapy")["answer"] = [
        {"valueBoolean": False},
        {"valueBoolean": True},
    ]
    assert "item I.C.combination_therapy takes one answer, got 2" in messages(
        refused(catalog, response)
    )


def test_item_repeated(catalog: Catalog, response: dict[str, Any]) -> None:
    group = find(response, "I.C")
    group["item"].append(copy.deepcopy(group["item"][0]))
    assert "item I.C.combination_therapy appears more than once" in messages(
        refused(catalog, response)
    )


def test_answer_to_a_disabled_item(catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    answers = {**LGSOC, "diagnosis": "II.C", "kras_mutation": True, "oncologist_consulted": True}
    error = refused(catalog, fill(package, answers))
    text = messages(error)
    assert "item I.D.2.kras_mutation is answered but not enabled" in text
    assert "I.D.2: I.D.diagnosis = I.D" in text
    assert "item I.B.oncologist_consulted is answered but not enabled" in text
    assert "I.B.prescriber_oncologist = false" in text


def test_status_that_cannot_be_scored(catalog: Catalog, response: dict[str, Any]) -> None:
    response["status"] = "entered-in-error"
    assert "status 'entered-in-error' cannot be scored" in messages(refused(catalog, response))


def test_every_problem_is_reported(catalog: Catalog, response: dict[str, Any]) -> None:
    find(response, "QL.requested_quantity")["answer"] = [{"valueString": "lots"}]
    find(response, "I.A")["item"].append({"linkId": "I.A.nickname"})
    assert len(refused(catalog, response).issues) == 2


def test_expressions_in_the_response_are_never_evaluated(
    catalog: Catalog, response: dict[str, Any]
) -> None:
    """A response carrying its own logic changes nothing: only package expressions run."""
    response["extension"] = [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/cqf-expression",
            "valueExpression": {"language": "text/fhirpath", "expression": "true"},
        }
    ]
    assert score_json(catalog, response, AS_OF).outcome == "pended"
