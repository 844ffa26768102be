"""DTR requests as the tests send them: the member's Coverage and a
``$questionnaire-package`` body, written once for every test module."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

FHIR = {"content-type": "application/fhir+json"}
PACKAGE = "/Questionnaire/$questionnaire-package"


# The bundled payers as a member's Coverage names them: the identifier an EHR
# puts on Coverage.payor (policies/payers/*.yaml `identifiers`) and a name.
EOCCO = {
    "identifier": {"system": "https://www.eocco.com/fhir/sid/payer-id", "value": "EOCCO"},
    "display": "Eastern Oregon Coordinated Care Organization",
}
MN_DHS = {
    "identifier": {"system": "https://mn.gov/dhs/fhir/sid/payer-id", "value": "MHCP"},
    "display": "Minnesota Health Care Programs",
}
WHA = {
    "identifier": {"system": "https://www.westernhealth.com/fhir/sid/payer-id", "value": "WHA"},
    "display": "Western Health Advantage",
}
# the fixture policies' payer (tests/fixtures/payers/FIXTURE.yaml)
FIXTURE = {
    "identifier": {"system": "https://pa-dtr.example.org/fhir/sid/payer-id", "value": "FIXTURE"},
    "display": "Fixture Health Plan",
}


def coverage(member: str = "Patient/p1", payor: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``coverage`` parameter: the member's Coverage with the plan, the
    payer named by identifier as an EHR's Coverage names it (EOCCO unless
    ``payor`` says otherwise)."""
    return {
        "name": "coverage",
        "resource": {
            "resourceType": "Coverage",
            "id": "cov1",
            "status": "active",
            "beneficiary": {"reference": member},
            "payor": [payor or EOCCO],
        },
    }


def order(
    coding: list[dict[str, Any]], text: str | None = None, member: str = "Patient/p1"
) -> dict[str, Any]:
    """The ``order`` parameter: a draft MedicationRequest of the drug coded
    (and/or named) so."""
    concept: dict[str, Any] = {"coding": coding} if coding else {}
    if text:
        concept["text"] = text
    return {
        "name": "order",
        "resource": {
            "resourceType": "MedicationRequest",
            "id": "mr1",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": member},
            "medicationCodeableConcept": concept,
        },
    }


def canonical(value: str) -> dict[str, Any]:
    return {"name": "questionnaire", "valueCanonical": value}


def package_request(
    *parts: dict[str, Any], member: str = "Patient/p1", payor: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [coverage(member, payor), *parts]}


def ask(
    client: TestClient,
    *parts: dict[str, Any],
    member: str = "Patient/p1",
    payor: dict[str, Any] | None = None,
) -> Any:
    """POST ``$questionnaire-package`` for the member (of ``payor``, EOCCO
    unless said) with these parameters."""
    body = json.dumps(package_request(*parts, member=member, payor=payor))
    return client.post(PACKAGE, content=body, headers=FHIR)


def the_bundle(reply: Any) -> dict[str, Any]:
    """The one package Bundle of a 200 reply."""
    assert reply.status_code == 200, reply.text
    (bundle,) = [p["resource"] for p in reply.json()["parameter"] if p["name"] == "packagebundle"]
    return dict(bundle)
