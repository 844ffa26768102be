"""The record a CDS client prefetched (qpackage.record): what a prefetch key
holds, the rulings on keys left out (not fetched: unknown) and ``null``
(fetched, none found), and the prefetch templates derived from the
policies' ``ehr`` sources."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from builder.prepopulation import sources
from qpackage.catalog import Catalog
from qpackage.record import Record, RecordError, evaluate_record, prefetch_templates
from tests.support.cases import AS_OF, package_for

KRAS = {
    "resourceType": "Observation",
    "id": "kras",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "21702-6"}]},
    "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA11882-0"}]},
}


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            *({"resource": r} for r in resources),
            # a searchset may carry an OperationOutcome: not a result
            {"resource": {"resourceType": "OperationOutcome", "issue": []}},
        ],
    }


def test_a_key_left_out_is_unknown_and_null_found_nothing() -> None:
    record = Record.from_prefetch(
        {
            "patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1961-03-14"},
            "observations": searchset(KRAS),
            "conditions": None,
            "unrelated": {"resourceType": "Basic"},
        }
    )
    assert record.fetched == {"patient", "observations", "conditions"}
    assert record.patient is not None and record.patient["id"] == "p1"
    assert [o["id"] for o in record.observations] == ["kras"]
    assert record.conditions == () and record.practitioner_role is None


@pytest.mark.parametrize(
    ("prefetch", "message"),
    [
        ({"patient": ["Patient/p1"]}, "prefetch 'patient': expected a Patient or a Bundle"),
        ({"conditions": {"resourceType": "Observation"}}, "got 'Observation'"),
        ({"observations": {"resourceType": "Bundle", "entry": {}}}, "Bundle.entry must be a list"),
    ],
)
def test_a_malformed_prefetch_names_its_key(prefetch: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message):
        Record.from_prefetch(prefetch)


def test_an_unfetched_search_answers_nothing_where_a_fetched_one_answers(
    catalog: Catalog,
) -> None:
    package = package_for(catalog, "eocco329", "initial")
    fetched = evaluate_record(package, Record.from_resources([KRAS]), AS_OF)
    assert fetched.prefills["kras_mutation"].value is True
    unfetched = evaluate_record(
        package, Record.from_resources([KRAS], fetched=["patient", "conditions"]), AS_OF
    )
    kras = unfetched.prefills["kras_mutation"]
    assert (kras.value, kras.unfetched) == (None, ("observations",))
    assert "observations" in unfetched.unfetched
    assert fetched.status_of("I.D.2") == unfetched.status_of("I.D.2") == "open"


def test_the_prefetch_templates_name_every_code_the_sources_name(catalog: Catalog) -> None:
    policies = list(catalog.policies.values())
    templates = prefetch_templates(policies)
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["practitionerRole"] == "PractitionerRole/{{userPractitionerRoleId}}"
    expected = {"conditions": "Condition", "observations": "Observation"}
    for policy in policies:
        for question in sources(policy).values():
            for source in question.ehr:
                for coding in source.codes:
                    keys = (
                        ["medicationRequests", "medicationStatements"]
                        if source.kind == "medication"
                        else [k for k, v in expected.items() if v.lower() == source.kind]
                    )
                    for key in keys:
                        assert f"{coding.system}|{coding.code}" in templates[key]
    # a search no source reads is not asked for
    assert set(prefetch_templates([])) == {"patient", "coverage", "practitionerRole"}


def test_the_findings_name_the_record_the_form_and_the_day(catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    found = evaluate_record(package, Record.from_resources([KRAS]), date(2026, 11, 24)).to_json()
    assert found["policy"] == "eocco329"
    assert found["questionnaire"].startswith("https://") and "|" in found["questionnaire"]
    assert found["asOf"] == "2026-11-24"
    (kras,) = [p for p in found["prefills"] if p["question"] == "kras_mutation"]
    assert kras["read"] == [
        "Observation 21702-6 KRAS gene mutations found, LA11882-0 Detected, final"
    ]
