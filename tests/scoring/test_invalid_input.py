"""Bad input gets an OperationOutcome naming the problem — never a traceback,
never a determination. Each case edits a valid response built with `fill`."""

from __future__ import annotations

import base64
import copy
import json
import sys
from typing import Any

import fhirpathpy
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome

from qpackage.catalog import Catalog, score_json
from scoring import InvalidInput
from scoring.fill import fill
from tests.support.cases import AS_OF, base_answers, package_for

LGSOC = {**base_answers("eocco329", "not_lgsoc"), "diagnosis": "I.D", "figo_stage": "III"}


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
    url, version = response["questionnaire"].split("|")
    response["questionnaire"] = f"{url}|0.9"
    text = messages(refused(catalog, response))
    assert f"{url} has no version 0.9 (known: " in text
    known = text.split("(known: ", 1)[1].split(")", 1)[0].split(", ")
    # the versions released.json records (1.0.0-r1 was the first), and the current one
    assert {"1.0.0-r1", version} <= set(known)


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


# --- expressions carried by the response ------------------------------------
# A response may carry FHIRPath wherever FHIR and SDC allow an Expression: a
# value given by an expression (cqf-expression on the primitive), an item's
# calculated, initial or enableWhen expression, a Library of its own. Only the
# package's definitions decide: each expression below would change the outcome
# if it were evaluated (true where the answer is false; a date of birth where
# none is given; an item enabled that is not), and every one carries MARK, so
# that any evaluation at all is seen.

MARK = "never-evaluated"
TRUE = f"'{MARK}' = '{MARK}'"  # FHIRPath: true
BIRTH_DATE = f"iif('{MARK}' = '{MARK}', @1960-01-01)"  # FHIRPath: a date of an adult
CQF_EXPRESSION = "http://hl7.org/fhir/StructureDefinition/cqf-expression"
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-"
MET = base_answers("eocco329", "initial_met")
# I.B not met: the prescriber is no oncologist and did not consult one
NOT_CONSULTED = {**MET, "prescriber_oncologist": False, "oncologist_consulted": False}


def expression(text: str) -> dict[str, str]:
    return {"language": "text/fhirpath", "expression": text}


def extension(url: str, text: str) -> dict[str, Any]:
    return {"url": url, "valueExpression": expression(text)}


def own_library(package: Any) -> dict[str, Any]:
    """A Library defining every criterion of the package as met."""
    text = "\n".join(f'define "{name}": {TRUE}' for name in package.expressions)
    return {
        "resourceType": "Library",
        "id": "own-logic",
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                             "code": "logic-library"}]},
        "content": [{"contentType": "text/fhirpath",
                     "data": base64.b64encode(text.encode()).decode()}],
    }  # fmt: skip


PROJECT = {"builder", "cql_like", "scoring"}  # where fhirpathpy may be called from


def spy_on_fhirpath(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every FHIRPath text compiled or evaluated from now on, wherever the
    project calls fhirpathpy from."""
    seen: list[str] = []
    real: dict[str, Any] = {"compile": fhirpathpy.compile, "evaluate": fhirpathpy.evaluate}

    def compile_(source: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(source))
        return real["compile"](source, *args, **kwargs)

    def evaluate_(resource: Any, source: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(source))
        return real["evaluate"](resource, source, *args, **kwargs)

    spies = {"compile": compile_, "evaluate": evaluate_}
    modules = [m for n, m in list(sys.modules.items()) if n.split(".")[0] in PROJECT]
    for module in [fhirpathpy, *modules]:
        for attribute, value in list(vars(module).items()):
            for name, function in real.items():
                if value is function:
                    monkeypatch.setattr(module, attribute, spies[name])
    return seen


def test_the_injected_expressions_would_change_the_outcome(catalog: Catalog) -> None:
    """The premise of the tests below: evaluated, each injected expression
    gives a value that decides differently from the response's own answers."""
    package = package_for(catalog, "eocco329", "initial")
    assert fhirpathpy.evaluate({}, TRUE) == [True]
    assert [str(d) for d in fhirpathpy.evaluate({}, BIRTH_DATE)] == ["1960-01-01"]
    denied = score_json(catalog, fill(package, NOT_CONSULTED), AS_OF)
    assert (denied.outcome, denied.unmet) == ("denied", ["I.B"])
    consulted = {**NOT_CONSULTED, "oncologist_consulted": True}
    decided = score_json(catalog, fill(package, consulted), AS_OF)
    assert decided.outcome != "denied" and "I.B" not in decided.unmet
    no_birth_date = {k: v for k, v in MET.items() if k != "birth_date"}
    pended = score_json(catalog, fill(package, no_birth_date), AS_OF)
    assert package.link_of["birth_date"] in pended.missing_questions
    dated = {**no_birth_date, "birth_date": "1960-01-01"}
    decided = score_json(catalog, fill(package, dated), AS_OF)
    assert package.link_of["birth_date"] not in decided.missing_questions
    assert decided.to_json() != pended.to_json()


def _value_by_expression(response: dict[str, Any], link: str, package: Any) -> None:
    # FHIR's dynamic value: the primitive's value given by a cqf-expression
    find(response, link)["answer"] = [
        {"valueBoolean": False, "_valueBoolean": {"extension": [extension(CQF_EXPRESSION, TRUE)]}}
    ]


def _answer_extension(response: dict[str, Any], link: str, package: Any) -> None:
    find(response, link)["answer"][0]["extension"] = [extension(CQF_EXPRESSION, TRUE)]


def _calculated(response: dict[str, Any], link: str, package: Any) -> None:
    find(response, link)["extension"] = [
        extension(SDC + "calculatedExpression", TRUE),
        extension(SDC + "initialExpression", TRUE),
    ]


def _item_text(response: dict[str, Any], link: str, package: Any) -> None:
    find(response, link)["text"] = TRUE
    parent = package.items[link].parent
    find(response, parent)["text"] = f"%resource.repeat(item).answer.value.exists() or {TRUE}"


def _own_library(response: dict[str, Any], link: str, package: Any) -> None:
    response["contained"] = [own_library(package)]
    response["extension"] = [
        {"url": CQF_LIBRARY, "valueCanonical": "#own-logic"},
        extension(CQF_EXPRESSION, TRUE),
    ]


INJECTIONS = {
    "value given by a cqf-expression": _value_by_expression,
    "answer extension with an expression": _answer_extension,
    "calculated and initial expressions": _calculated,
    "item text that is FHIRPath": _item_text,
    "a Library of its own": _own_library,
}


@pytest.mark.parametrize("inject", [*INJECTIONS, "all at once"])
def test_expressions_in_the_response_are_never_evaluated(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch, inject: str
) -> None:
    """Denied citing I.B; with expressions that would make I.B met, the
    determination is the same, and no injected expression is ever evaluated."""
    package = package_for(catalog, "eocco329", "initial")
    link = package.link_of["oncologist_consulted"]
    plain = fill(package, NOT_CONSULTED)
    expected = score_json(catalog, copy.deepcopy(plain), AS_OF).to_json()
    carrying = copy.deepcopy(plain)
    for name in INJECTIONS if inject == "all at once" else [inject]:
        INJECTIONS[name](carrying, link, package)
    assert MARK in json.dumps(carrying)
    seen = spy_on_fhirpath(monkeypatch)
    assert score_json(catalog, carrying, AS_OF).to_json() == expected
    assert [source for source in seen if MARK in source] == []


def test_an_expression_never_supplies_a_missing_answer(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Date of birth not given: the item carries expressions that would give
    one; the request still pends for it."""
    package = package_for(catalog, "eocco329", "initial")
    link = package.link_of["birth_date"]
    given = fill(package, MET)
    expected = score_json(
        catalog, fill(package, {k: v for k, v in MET.items() if k != "birth_date"}), AS_OF
    ).to_json()
    assert link in expected["missingQuestions"]
    item = find(given, link)
    del item["answer"]
    item["extension"] = [
        extension(SDC + "calculatedExpression", BIRTH_DATE),
        extension(SDC + "initialExpression", BIRTH_DATE),
    ]
    seen = spy_on_fhirpath(monkeypatch)
    assert score_json(catalog, given, AS_OF).to_json() == expected
    assert [source for source in seen if MARK in source] == []


def test_an_expression_never_enables_an_item(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer to a disabled item is refused, whatever enableWhenExpression
    the response puts on it."""
    package = package_for(catalog, "eocco329", "initial")
    link = package.link_of["oncologist_consulted"]
    disabled = fill(package, {**MET, "oncologist_consulted": True})  # the prescriber is one
    expected = messages(refused(catalog, copy.deepcopy(disabled)))
    assert f"item {link} is answered but not enabled" in expected
    find(disabled, link)["extension"] = [extension(SDC + "enableWhenExpression", TRUE)]
    seen = spy_on_fhirpath(monkeypatch)
    assert messages(refused(catalog, disabled)) == expected
    assert [source for source in seen if MARK in source] == []
