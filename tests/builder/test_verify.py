"""Build-time verification: a policy file that could decide wrongly is refused
with a message naming the file, the section and the field; the bundled
policies (whatever they are) verify."""

from __future__ import annotations

import base64
import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from builder.verification.verify import check_expression, verify_policy
from dtr.cli import main
from policies.loader import bundled_policy_files, load_policy
from qpackage.catalog import Catalog
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import base_answers
from tests.support.paths import FIXTURES
from tests.support.policy_edits import edit

FIXTURES = FIXTURES
EOCCO = next(p for p in bundled_policy_files() if p.name == "eocco329.yaml")


@pytest.mark.parametrize("path", bundled_policy_files(), ids=lambda p: p.name)
def test_bundled_policies_verify(path: Path) -> None:
    assert verify_policy(load_policy(path), str(path)) == []


@pytest.mark.cases("verify_errors.yaml")
def test_policy_that_could_decide_wrongly_is_refused(case: dict[str, Any], tmp_path: Path) -> None:
    # the bundled EOCCO329 policy, or a fixture (`fixture`)
    source = FIXTURES / case["fixture"] if "fixture" in case else EOCCO
    data = copy.deepcopy(yaml.safe_load(source.read_text(encoding="utf-8")))
    for path, value in case["set"].items():
        edit(data, path, value)
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
    from builder.verification.verify import Typ

    types = {"flag": Typ("Boolean"), "as_of": Typ("Date"), "born": Typ("Date")}
    assert check_expression("%flag = false or %born + 18 years <= %as_of", types) == []
    assert check_expression("%flag = 'no'", types) != []


def test_silent_drop_policy_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Branches with no question of their own, conditioned on a question the
    renewal form does not ask: never dropped silently."""
    assert main(["check", str(FIXTURES / "silent-drop.yaml")]) == 2
    error = capsys.readouterr().err
    assert (
        "silent-drop.yaml: fixture-silent-drop-renewal: RenewalMelanoma: enable_when: indication"
        " is not asked" in error
    )
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


def test_dotted_word_ids_build_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Section ids of dotted words (``Renewal.Indication``) verify and build:
    the linkIds, item codes, the document's question and the definitions are
    named after them (their cases: tests/fixtures/policies/dotted/dotted-ids.examples.yaml)."""
    assert main(["check", "--policies", str(FIXTURES / "dotted")]) == 0
    assert "fixture-dotted 1.0.0: verified" in capsys.readouterr().out
    folder = tmp_path / "payer"
    shutil.copytree(FIXTURES / "dotted", folder)
    assert main(["build", "--policies", str(folder)]) == 0
    built = folder / "questionnaires"
    renewal = json.loads((built / "Questionnaire-fixture-dotted-renewal.json").read_text())
    response = next(i for i in renewal["item"] if i["linkId"] == "Renewal.Response")
    assert response["code"][0]["code"] == "Renewal.Response"
    assert [i["linkId"] for i in response["item"]] == [
        "Renewal.Response.no_progression",
        "Renewal.Response.documentation",
    ]
    logic = json.loads((built / "Library-fixture-dotted-initial-logic.json").read_text())
    text = base64.b64decode(logic["content"][0]["data"]).decode()
    assert 'define "Initial.Indication.Lung":' in text
    assert "Initial.Prescriber.Oncologist or Initial.Prescriber.Consulted" in text
    assert "Initial.Indication.Lung" in (folder / "docs" / "decision-tables.md").read_text()


def test_documents_fixture_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    """Documents required on criteria with children: met only with the
    document attached, never not met by its absence (its cases:
    tests/fixtures/policies/documents/branch-document.examples.yaml)."""
    assert main(["check", "--policies", str(FIXTURES / "documents")]) == 0
    assert "fixture-branch-document 1.0.0: verified" in capsys.readouterr().out


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
    assert set(catalog.policies) == {"fixture-class"}  # only the file copied there
    package = next(p for p in catalog.current.values() if p.drug == "alpha" and p.kind == "initial")
    response = fill(package, base_answers("fixture-class", "alpha_adjuvant"))
    body = tmp_path / "response.json"
    body.write_text(json.dumps(response), encoding="utf-8")
    assert main(["score", "--policies", str(folder), str(body), "--as-of", "2026-11-24"]) == 0

    app = create_app(Settings(database=str(tmp_path / "db.sqlite3"), policies=str(folder)))
    with authorize(TestClient(app)) as client:
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


def test_a_folder_that_does_not_verify_is_not_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(FIXTURES / "unread-branch.yaml", tmp_path / "unread-branch.yaml")
    assert main(["serve", "--policies", str(tmp_path), "--port", "1"]) == 2
    assert "renewal_indication is enabled and unanswered" in capsys.readouterr().err
