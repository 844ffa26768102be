"""An attestation the prescriber signs (a question's ``signature_required``,
only in the fixture tests/fixtures/policies/signed): the form carries
``questionnaire-signatureRequired``; an answer whose item carries a
signature (``questionnaireresponse-signature``: type, when, who) counts; one
without counts as unanswered, so the request pends and never approves; a
malformed signature is refused naming the item."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire

from policies.model import Question
from qpackage.catalog import score_json
from questionnaires.checks import iter_items
from scoring import InvalidInput
from scoring.fill import fill
from tests.support.cases import AS_OF, folder_catalog, package_for

FOLDER = "fixtures/policies/signed"
SIGNATURE = "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-signature"
SIGNED: dict[str, Any] = {
    "url": SIGNATURE,
    "valueSignature": {
        "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
        "when": "2026-11-24T10:00:00Z",
        "who": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}},
    },
}


def response(signature: dict[str, Any] | None) -> dict[str, Any]:
    package = package_for(folder_catalog(FOLDER), "fixture-signed", "initial")
    filled = fill(package, {"birth_date": "1960-01-01", "attests": True})
    if signature is not None:
        for item, _ in iter_items(filled["item"]):
            if item["linkId"] == package.link_of["attests"]:
                item["extension"] = [signature]
    return filled


def test_the_form_asks_for_a_signature() -> None:
    package = package_for(folder_catalog(FOLDER), "fixture-signed", "initial")
    Questionnaire.model_validate(package.questionnaire)
    (item,) = [
        i
        for i, _ in iter_items(package.questionnaire["item"])
        if i["linkId"] == package.link_of["attests"]
    ]
    (required,) = [
        e for e in item["extension"] if e["url"].endswith("questionnaire-signatureRequired")
    ]
    assert required["valueCodeableConcept"]["coding"][0]["code"] == "1.2.840.10065.1.12.1.1"


def test_a_signed_attestation_counts_and_an_unsigned_one_pends() -> None:
    catalog = folder_catalog(FOLDER)
    assert score_json(catalog, response(SIGNED), AS_OF).outcome == "approved"
    unsigned = score_json(catalog, response(None), AS_OF)
    assert unsigned.outcome == "pended"
    assert unsigned.missing == ["Attest"]


@pytest.mark.parametrize(
    "signature",
    [
        {"url": SIGNATURE, "valueSignature": {**SIGNED["valueSignature"], "when": "yesterday"}},
        {"url": SIGNATURE, "valueSignature": {**SIGNED["valueSignature"], "type": []}},
        {"url": SIGNATURE, "valueSignature": {"when": "2026-11-24T10:00:00Z"}},
    ],
    ids=["when is no instant", "no type", "no type and no who"],
)
def test_a_malformed_signature_is_refused_naming_the_item(signature: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as refused:
        score_json(folder_catalog(FOLDER), response(signature), AS_OF)
    said = " ".join(i.diagnostics for i in refused.value.issues)
    assert "Attest.attests" in said and "ignature" in said  # the signature, or valueSignature


def test_only_a_boolean_question_requires_a_signature() -> None:
    with pytest.raises(ValueError, match="cannot require a signature"):
        Question.model_validate(
            {"name": "x", "type": "string", "text": "X", "signature_required": True}
        )
