"""The constructs no shared policy uses, through the public API, on the
fixture policies of tests/fixtures/policies/constructs (their clinical cases are the
worked examples tests/fixtures/policies/constructs/class-policy.examples.yaml): one Questionnaire per drug,
what a short policy text leaves out, the ClaimResponse and notice of a
modified approval and of a referral for review, and the order selecting a
drug's Questionnaires."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.config import load_payers
from review.notice import render_notice
from scoring import score
from scoring.fhir_outputs import claim_response
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import base_answers
from tests.support.dtr_requests import FIXTURE, order, package_request
from tests.support.paths import FIXTURE_PAYERS, FIXTURES

FIXTURES = FIXTURES


def test_what_the_text_leaves_out() -> None:
    """No limit, no length, no renewal criteria, no date: the payer defaults
    apply, marked assumed, and the notice gives their real reasons."""

    catalog = Catalog.from_folder(FIXTURES / "constructs")
    package = next(
        p
        for p in catalog.current.values()
        if p.policy.id == "fixture-no-limit" and p.kind == "renewal"
    )
    assert "date" not in package.questionnaire
    assert not package.limits and "requested_quantity" not in package.link_of
    determination = score(package, fill(package, {"covered_condition": True}), date(2026, 11, 24))
    assert determination.outcome == "approved" and determination.quantity is None
    assert determination.authorization is not None and determination.authorization.assumed
    text = render_notice(determination, "text")
    assert "Length of authorization (the policy states none): The plan's default" in text
    assert "The policy states no criteria for a renewal request: The policy has no renewal" in text
    assert "Quantity limit" not in text


def test_constructs_fixture_questionnaires() -> None:
    catalog = Catalog.from_folder(FIXTURES / "constructs")
    ids = sorted(p.questionnaire["id"] for p in catalog.current.values())
    assert ids == [
        "fixture-class-alpha-initial",
        "fixture-class-alpha-renewal",
        "fixture-class-beta-initial",
        "fixture-class-beta-renewal",
        "fixture-no-limit-initial",
        "fixture-no-limit-renewal",
    ]
    alpha = next(
        p for p in catalog.current.values() if p.questionnaire["id"].endswith("alpha-initial")
    )
    beta = next(
        p for p in catalog.current.values() if p.questionnaire["id"].endswith("beta-initial")
    )
    assert "mek_naive" in alpha.link_of and "mek_naive" not in beta.link_of
    items = alpha.questionnaire_items
    assert items[alpha.link_of["sites"]]["repeats"] is True
    icd = items[alpha.link_of["icd10"]]
    assert icd["required"] is False
    assert any(e["url"].endswith("/record-only") for e in icd["extension"])
    renewal = next(
        p for p in catalog.current.values() if p.questionnaire["id"].endswith("alpha-renewal")
    )
    assert "prior_renewals" in renewal.link_of


def _construct_determination(changes: dict[str, Any]) -> Any:

    catalog = Catalog.from_folder(FIXTURES / "constructs")
    package = next(p for p in catalog.current.values() if p.drug == "alpha" and p.kind == "initial")
    answers = {
        k: v
        for k, v in {**base_answers("fixture-class", "alpha_adjuvant"), **changes}.items()
        if v is not None
    }
    return score(package, fill(package, answers), date(2026, 11, 24))


def test_a_modified_approval_says_so_in_the_claim_response_and_notice() -> None:

    determination = _construct_determination({"requested_quantity": 90})
    claim = claim_response(determination)
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    assert action["valueCodeableConcept"]["coding"][0]["code"] == "A6"
    assert claim["item"][0]["adjudication"][1]["value"] == 60
    notes = [note["text"] for note in claim["processNote"]]
    assert "Quantity approved: 60 tablets per 30 days (requested 90)" in notes
    text = render_notice(determination, "text")
    assert "DECISION: Approved — for less than was requested" in text
    assert "Quantity approved: 60 tablets per 30 days." in text
    assert "Quantity requested: 90 tablets per 30 days." in text
    assert "Length of authorization: adjuvant therapy is approved for 6 months" in text


def test_a_review_pend_says_so_in_the_claim_response_and_notice() -> None:

    determination = _construct_determination({"mek_naive": False})
    claim = claim_response(determination)
    assert claim["outcome"] == "queued"
    assert claim["disposition"] == "Pended: referred to a pharmacist for review"
    assert any("Referred to a pharmacist for Naive" in n["text"] for n in claim["processNote"])
    text = render_notice(determination, "text")
    assert "DECISION: Pended — referred to a pharmacist for review" in text
    assert "  - Naive: Alphanib only in MEK-inhibitor-naive patients" in text


def test_the_order_selects_the_drugs_questionnaires(tmp_path: Path) -> None:
    """A class policy: the ordered drug's Questionnaires only, never the other drug's."""
    app = create_app(
        Settings(database=str(tmp_path / "db.sqlite3"), policies=str(FIXTURES / "constructs")),
        payers=load_payers(FIXTURE_PAYERS),
    )
    body = package_request(order([], "Betanib 5 mg"), payor=FIXTURE)
    with authorize(TestClient(app)) as client:
        reply = client.post(
            "/Questionnaire/$questionnaire-package",
            content=json.dumps(body),
            headers={"Content-Type": "application/fhir+json"},
        )
    assert reply.status_code == 200, reply.text
    ids = sorted(
        p["resource"]["entry"][0]["resource"]["id"]
        for p in reply.json()["parameter"]
        if p["name"] != "outcome"
    )
    assert ids == ["fixture-class-beta-initial", "fixture-class-beta-renewal"]
