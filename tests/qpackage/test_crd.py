"""CRD's pure side (qpackage.crd): the prefetch templates come from the
policies' ``ehr:`` sources; an order is assessed as ``$questionnaire-package``
matches it; every coverage-information extension has CRD's required elements
and keeps the StructureDefinition's invariants (fhirpathpy), and a
deliberately wrong one breaks the invariant named."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from qpackage.catalog import Catalog
from qpackage.crd import Assertion, assess, coverage_information, prefetch_templates, services
from review.config import PayerConfig, load_payers
from tests.support.cases import AS_OF, folder_catalog, package_for
from tests.support.crd import coverage, medication_request, violations
from tests.support.dtr_requests import EOCCO, FIXTURE, MN_DHS, WHA
from tests.support.paths import FIXTURE_PAYERS, PAYER_SETTINGS, ROOT

MEKINIST = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1425098"}]


@pytest.fixture(scope="module")
def payers() -> dict[str, PayerConfig]:
    return load_payers(PAYER_SETTINGS)


def canonical(package: Any) -> str:
    return f"{package.questionnaire['url']}|{package.questionnaire['version']}"


@pytest.mark.cases("crd_coverage_information.yaml")
def test_each_assertion_keeps_the_invariants_or_breaks_the_one_named(case: dict[str, Any]) -> None:
    made: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in case["assertion"].items()
    }
    assertion = Assertion(
        id="a1",
        coverage="Coverage/cov1",
        order="MedicationRequest/m1",
        member="ref:Patient/example",
        policy="p",
        date=AS_OF,
        **made,
    )
    assert violations(coverage_information(assertion)) == case["violates"]


def test_a_coded_reason_needs_text_unless_it_is_from_crds_value_set() -> None:
    extension = coverage_information(
        Assertion("a1", "Coverage/c", "MedicationRequest/m", None, "p", "covered", AS_OF, "no-auth")
    )
    coded = copy.deepcopy(extension)
    coded["extension"].append(
        {"url": "reason", "valueCodeableConcept": {"coding": [{"system": "urn:x", "code": "y"}]}}
    )
    assert violations(coded) == ["crd-ci-q7"]
    gold = coded["extension"][-1]["valueCodeableConcept"]["coding"][0]
    gold.update(system="http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp", code="gold-card")
    assert violations(coded) == []


def test_a_missing_required_element_is_found() -> None:
    extension = coverage_information(
        Assertion("a1", "Coverage/c", "MedicationRequest/m", None, "p", "covered", AS_OF, "no-auth")
    )
    extension["extension"] = [e for e in extension["extension"] if e["url"] != "date"]
    assert violations(extension) == ["missing date"]


def test_an_order_of_a_covered_drug_needs_prior_authorization_and_its_form(
    catalog: Catalog, payers: dict[str, PayerConfig]
) -> None:
    order = medication_request("m1", [], "Avmapki Fakzynja Co-Pack")
    (assertion,) = assess(
        catalog, order, coverage(EOCCO), payers=payers, today=AS_OF, approvals=lambda m, p: []
    )
    extension = coverage_information(assertion)
    assert violations(extension) == []
    values = {e["url"]: next(v for k, v in e.items() if k != "url") for e in extension["extension"]}
    assert values["coverage"] == {"reference": "Coverage/cov1"}
    assert (values["covered"], values["pa-needed"], values["doc-needed"]) == (
        "covered",
        "auth-needed",
        "clinical",
    )
    assert values["questionnaire"] == canonical(package_for(catalog, "eocco329", "initial"))
    assert values["date"] == "2026-11-24"
    assert values["coverage-assertion-id"] == assertion.id
    assert "info-needed" not in values and "satisfied-pa-id" not in values
    assert assertion.member == "ref:Patient/example" and assertion.policy == "eocco329"


def test_a_member_approved_before_gets_the_renewal_form_and_one_running_needs_none(
    catalog: Catalog, payers: dict[str, PayerConfig]
) -> None:
    order = medication_request("m1", MEKINIST)
    approved = {"authorization": {"start": "2025-01-01", "end": "2025-12-31"}}

    def assessed(today: date) -> Assertion:
        (assertion,) = assess(
            catalog,
            order,
            coverage(MN_DHS),
            payers=payers,
            today=today,
            approvals=lambda member, policy: (
                [("r1", "q", approved)]
                if (member, policy) == ("ref:Patient/example", "mn-dhs-mekinist")
                else []
            ),
        )
        assert violations(coverage_information(assertion)) == []
        return assertion

    expired = assessed(AS_OF)
    assert expired.pa_needed == "auth-needed"
    assert expired.questionnaires == (
        canonical(package_for(catalog, "mn-dhs-mekinist", "renewal")),
    )
    running = assessed(date(2025, 6, 1))
    assert (running.pa_needed, running.satisfied_pa_id) == ("satisfied", "r1")
    assert running.doc_needed is None and running.questionnaires == ()


def test_no_assertion_for_another_payers_member_or_a_drug_no_policy_covers(
    catalog: Catalog, payers: dict[str, PayerConfig]
) -> None:
    def made(order: dict[str, Any], payor: dict[str, Any]) -> list[Assertion]:
        return assess(
            catalog, order, coverage(payor), payers=payers, today=AS_OF, approvals=lambda m, p: []
        )

    mekinist = medication_request("m1", MEKINIST)
    assert len(made(mekinist, MN_DHS)) == 1
    assert made(mekinist, WHA) == []  # WHA has no Mekinist policy
    unknown = {"identifier": {"system": "urn:x", "value": "OTHER"}}
    assert made(mekinist, unknown) == []
    aspirin = medication_request(
        "m2", [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1191"}], "aspirin"
    )
    assert made(aspirin, MN_DHS) == []


def _codes_in_policy_files(kind: str) -> set[str]:
    """Every code of an ``ehr:`` source of this kind, read from the YAML."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for source in node.get("ehr") or []:
                if source.get("kind") == kind:
                    found.update(f"{c['system']}|{c['code']}" for c in source["codes"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((ROOT / "policies").glob("*.yaml")):
        if not path.name.endswith(".examples.yaml"):
            walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return found


def test_the_prefetch_asks_for_the_codes_the_policies_ehr_sources_name(catalog: Catalog) -> None:
    templates = prefetch_templates(catalog)
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["coverage"] == "Coverage?patient={{context.patientId}}&status=active"
    assert "practitionerRole" in templates  # EOCCO329 reads the prescriber's specialty
    for key, kind in [
        ("conditions", "condition"),
        ("observations", "observation"),
        ("medicationRequests", "medication"),
        ("medicationStatements", "medication"),
    ]:
        query = parse_qs(urlsplit(templates[key]).query)
        assert query["patient"] == ["{{context.patientId}}"]
        assert set(query["code"][0].split(",")) == _codes_in_policy_files(kind), key
    listed = services(catalog)["services"]
    assert [(s["id"], s["hook"]) for s in listed] == [
        ("dtr-pa-order-select", "order-select"),
        ("dtr-pa-order-sign", "order-sign"),
    ]
    assert all(s["prefetch"] == templates for s in listed)


def test_an_order_naming_two_drugs_of_one_policy_makes_the_form_conditional() -> None:
    """A policy of several drugs has a form per drug: an order that names two
    of them does not say which form applies, so documentation is conditional
    and the information needed is the product ordered."""
    catalog = folder_catalog("fixtures/policies/constructs")
    order = medication_request("m1", [], "Alphanib or Betanib")
    (assertion,) = assess(
        catalog,
        order,
        coverage(FIXTURE),
        payers=load_payers(FIXTURE_PAYERS),
        today=AS_OF,
        approvals=lambda m, p: [],
    )
    assert (assertion.doc_needed, assertion.info_needed) == ("conditional", ("detail-code",))
    assert assertion.questionnaires == tuple(
        canonical(package_for(catalog, "fixture-class", "initial", drug))
        for drug in ("alpha", "beta")
    )
    assert violations(coverage_information(assertion)) == []
    (alone,) = assess(
        catalog,
        medication_request("m2", [], "Alphanib"),
        coverage(FIXTURE),
        payers=load_payers(FIXTURE_PAYERS),
        today=AS_OF,
        approvals=lambda m, p: [],
    )
    assert (alone.doc_needed, alone.info_needed, len(alone.questionnaires)) == ("clinical", (), 1)
