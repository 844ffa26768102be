"""Build-time verification: a policy file that could decide wrongly is refused
with a message naming the file, the section and the field; the bundled
policies (whatever they are) verify."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from builder.loader import bundled_policy_files, load_policy
from builder.verify import check_expression, verify_policy
from dtr.cli import main
from scoring import Catalog
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.conftest import load_cases
from tests.test_policy_schema import _edit

FIXTURES = Path(__file__).parent / "policies"
EOCCO = next(p for p in bundled_policy_files() if p.name == "eocco329.yaml")


@pytest.mark.parametrize("path", bundled_policy_files(), ids=lambda p: p.name)
def test_bundled_policies_verify(path: Path) -> None:
    assert verify_policy(load_policy(path), str(path)) == []


@pytest.mark.parametrize("case", load_cases("verify_errors.yaml"))
def test_policy_that_could_decide_wrongly_is_refused(case: dict[str, Any], tmp_path: Path) -> None:
    data = copy.deepcopy(yaml.safe_load(EOCCO.read_text(encoding="utf-8")))
    for path, value in case["set"].items():
        _edit(data, path, value)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    problems = verify_policy(load_policy(broken), str(broken))
    assert problems, "the policy was not refused"
    joined = "\n".join(problems)
    assert all(p.startswith(f"{broken}: ") for p in problems)
    for expected in case["expect"]:
        assert expected in joined


def test_a_sound_expression_passes_the_checker() -> None:
    """The checker can say yes: the deliberately right twin of the table above."""
    from builder.verify import Typ

    types = {"flag": Typ("Boolean"), "as_of": Typ("Date"), "born": Typ("Date")}
    assert check_expression("%flag = false or %born + 18 years <= %as_of", types) == []
    assert check_expression("%flag = 'no'", types) != []


def test_silent_drop_policy_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Branches with no question of their own, conditioned on a question the
    renewal form does not ask: never dropped silently."""
    assert main(["check", str(FIXTURES / "silent-drop.yaml")]) == 2
    error = capsys.readouterr().err
    assert "silent-drop.yaml: RenewalMelanoma: enable_when: indication is not asked" in error
    assert "Traceback" not in error


def test_approval_an_unanswered_question_could_overturn_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(FIXTURES / "unread-branch.yaml")]) == 2
    error = capsys.readouterr().err
    assert "Dose.renewal_indication is enabled and unanswered" in error
    assert "gives denied (RenewalNSCLC)" in error


def test_constructs_fixture_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policies", str(FIXTURES / "constructs")]) == 0
    assert "verified" in capsys.readouterr().out


def test_policy_folder_outside_the_package(tmp_path: Path) -> None:
    """A payer's own folder builds, serves and scores with no change to the package."""
    folder = tmp_path / "payer"
    folder.mkdir()
    shutil.copy(FIXTURES / "constructs" / "class-policy.yaml", folder / "class.yaml")
    assert main(["build", "--policies", str(folder)]) == 0
    built = folder / "questionnaires" / "Questionnaire-fixture-class-alpha-initial.json"
    assert built.exists() and (folder / "questionnaires" / "released.json").exists()
    assert (folder / "docs" / "decision-tables.md").exists()

    catalog = Catalog.from_folder(folder)
    assert set(catalog.policies) == {"fixture-class"}
    package = next(p for p in catalog.current.values() if p.drug == "alpha" and p.kind == "initial")
    response = fill(package, CONSTRUCT_BASE)
    body = tmp_path / "response.json"
    body.write_text(json.dumps(response), encoding="utf-8")
    assert main(["score", "--policies", str(folder), str(body), "--as-of", "2026-11-24"]) == 0

    app = create_app(Settings(database=str(tmp_path / "db.sqlite3"), policies=str(folder)))
    with TestClient(app) as client:
        reply = client.post(
            "/QuestionnaireResponse/$evaluate",
            content=json.dumps(response),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert reply.status_code == 201, reply.text
        record = reply.json()["id"]
        assert client.get(f"/determinations/{record}").json()["outcome"] == "approved"
        assert client.get("/Questionnaire/fixture-class-beta-initial").status_code == 200


def test_changed_policy_needs_only_its_own_version_bump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "payer"
    folder.mkdir()
    shutil.copy(FIXTURES / "constructs" / "class-policy.yaml", folder / "class.yaml")
    assert main(["build", "--policies", str(folder)]) == 0
    data = yaml.safe_load((folder / "class.yaml").read_text(encoding="utf-8"))
    data["renewal"]["criteria"][0]["text"] = "No progression of disease"
    (folder / "class.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    capsys.readouterr()
    assert main(["build", "--policies", str(folder)]) == 2
    error = capsys.readouterr().err
    assert "policy fixture-class changed but its version 1.0.0 did not" in error
    assert "BUILDER_REVISION" not in error
    data["policy"]["version"] = "1.1.0"
    (folder / "class.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["build", "--policies", str(folder)]) == 0
    catalog = Catalog.from_folder(folder)
    versions = sorted(c.split("|")[1] for c in catalog.packages if "initial" in c)
    assert versions[0].startswith("1.0.0") and versions[-1].startswith("1.1.0")


CONSTRUCT_BASE = {
    "requested_quantity": 60,
    "setting": "Adjuvant",
    "resected": True,
    "alt": 40,
    "alt_uln": 40,
    "mek_naive": True,
    "planned_months": 12,
}
CONSTRUCT_CASES = [
    # (name, drug, answers changed, outcome, extra expectations)
    ("adjuvant branch: 6 months", "alpha", {}, "approved", {"months": 6}),
    ("lesser of planned therapy", "alpha", {"planned_months": 3}, "approved", {"months": 3}),
    (
        "metastatic: 12 months",
        "alpha",
        {"setting": "Metastatic", "resected": None, "sites": ["lung", "liver"]},
        "approved",
        {"months": 12},
    ),
    (
        "multi-select with brain",
        "alpha",
        {"setting": "Metastatic", "resected": None, "sites": ["lung", "brain"]},
        "denied",
        {"unmet": ["Metastatic"]},
    ),
    ("derived ALT ratio above 3", "alpha", {"alt": 121}, "denied", {"unmet": ["Liver"]}),
    ("derived ALT ratio exactly 3", "alpha", {"alt": 120}, "approved", {}),
    (
        "over the daily limit: modified",
        "alpha",
        {"requested_quantity": 90},
        "approved",
        {"quantity": (90, 60)},
    ),
    (
        "prior MEK inhibitor: pharmacist review",
        "alpha",
        {"mek_naive": False},
        "pended",
        {"review": ["Naive"], "pendReason": "review"},
    ),
    (
        "beta has no naive criterion and its own limit",
        "beta",
        {"mek_naive": None, "requested_quantity": 31},
        "approved",
        {"quantity": (31, 30)},
    ),
    ("missing ALT pends", "alpha", {"alt": None}, "pended", {"pendReason": "missing-information"}),
]


@pytest.mark.parametrize("case", CONSTRUCT_CASES, ids=lambda c: c[0])
def test_constructs_fixture_scores(case: tuple[Any, ...]) -> None:
    from datetime import date

    from scoring import score

    _name, drug, changes, outcome, extra = case
    catalog = Catalog.from_folder(FIXTURES / "constructs")
    package = next(p for p in catalog.current.values() if p.drug == drug and p.kind == "initial")
    answers = {**CONSTRUCT_BASE, **changes}
    answers = {k: v for k, v in answers.items() if v is not None and k in package.link_of}
    response = fill(package, answers)
    result = score(package, response, date(2026, 11, 24)).to_json()
    assert result["outcome"] == outcome, result
    if "months" in extra:
        assert result["authorization"]["months"] == extra["months"]
    if "unmet" in extra:
        assert result["sections"]["unmet"] == extra["unmet"]
    if "review" in extra:
        assert result["sections"]["review"] == extra["review"]
    if "pendReason" in extra:
        assert result["pendReason"] == extra["pendReason"]
    if "quantity" in extra:
        requested, approved = extra["quantity"]
        assert result["quantity"]["requested"] == requested
        assert result["quantity"]["approved"] == approved
        assert result["quantity"]["modified"] is (approved < requested)


def test_constructs_fixture_questionnaires() -> None:
    catalog = Catalog.from_folder(FIXTURES / "constructs")
    ids = sorted(p.questionnaire["id"] for p in catalog.current.values())
    assert ids == [
        "fixture-class-alpha-initial",
        "fixture-class-alpha-renewal",
        "fixture-class-beta-initial",
        "fixture-class-beta-renewal",
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
    from datetime import date

    from scoring import score

    catalog = Catalog.from_folder(FIXTURES / "constructs")
    package = next(p for p in catalog.current.values() if p.drug == "alpha" and p.kind == "initial")
    answers = {k: v for k, v in {**CONSTRUCT_BASE, **changes}.items() if v is not None}
    return score(package, fill(package, answers), date(2026, 11, 24))


def test_a_modified_approval_says_so_in_the_claim_response_and_notice() -> None:
    from scoring.fhir_outputs import claim_response
    from scoring.notice import render_notice

    determination = _construct_determination({"requested_quantity": 90})
    claim = claim_response(determination)
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    assert action["valueCodeableConcept"]["coding"][0]["code"] == "A6"
    assert claim["item"][0]["adjudication"][1]["value"] == 60
    notes = [note["text"] for note in claim["processNote"]]
    assert "Quantity approved: 60 tablets per 30 days (requested 90)" in notes
    text = render_notice(determination, "text")
    assert "Quantity approved: 60 tablets per 30 days (90 requested; approved modified" in text
    assert "Length of authorization: adjuvant therapy is approved for 6 months" in text


def test_a_review_pend_says_so_in_the_claim_response_and_notice() -> None:
    from scoring.fhir_outputs import claim_response
    from scoring.notice import render_notice

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
        Settings(database=str(tmp_path / "db.sqlite3"), policies=str(FIXTURES / "constructs"))
    )
    order = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": {"text": "Betanib 5 mg"},
    }
    body = {"resourceType": "Parameters", "parameter": [{"name": "order", "resource": order}]}
    with TestClient(app) as client:
        reply = client.post(
            "/Questionnaire/$questionnaire-package",
            content=json.dumps(body),
            headers={"Content-Type": "application/fhir+json"},
        )
    assert reply.status_code in (200, 201), reply.text
    ids = sorted(
        p["resource"]["entry"][0]["resource"]["id"]
        for p in reply.json()["parameter"]
        if p["name"] != "outcome"
    )
    assert ids == ["fixture-class-beta-initial", "fixture-class-beta-renewal"]
