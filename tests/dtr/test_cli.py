"""The command line: build, score (exit codes and formats), policy errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtr.cli import main
from scoring.fill import fill
from tests.support.cases import base_answers, bundled_catalog, package_for
from tests.support.paths import ROOT


def test_build_writes_what_is_committed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, docs = tmp_path / "q", tmp_path / "docs"
    assert main(["build", "--out", str(out), "--docs", str(docs)]) == 0
    for path in (ROOT / "questionnaires").glob("[A-Z]*-*.json"):  # the FHIR resources
        assert (out / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert (docs / "coverage.md").read_text(encoding="utf-8") == (
        ROOT / "docs" / "coverage.md"
    ).read_text(encoding="utf-8")
    assert "wrote" in capsys.readouterr().out


def test_building_one_file_keeps_the_other_policies_in_the_docs(tmp_path: Path) -> None:
    """`dtr build FILE` regenerates that policy; the coverage and decision
    tables still describe every policy of the folder."""
    out, docs = tmp_path / "q", tmp_path / "docs"
    cotellic = ROOT / "policies" / "mn-dhs-cotellic.yaml"
    assert main(["build", str(cotellic), "--out", str(out), "--docs", str(docs)]) == 0
    assert sorted(p.name for p in out.glob("Questionnaire-*.json")) == [
        "Questionnaire-mn-dhs-cotellic-initial.json",
        "Questionnaire-mn-dhs-cotellic-renewal.json",
    ]
    for name in ("coverage.md", "decision-tables.md"):
        text = (docs / name).read_text(encoding="utf-8")
        assert text == (ROOT / "docs" / name).read_text(encoding="utf-8"), name


def test_check_refuses_with_file_section_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "policies" / "mn-dhs-cotellic.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "cotellic.yaml"
    broken.write_text(text.replace('met: "%with_vemurafenib"', 'met: "%with_vemurafenib = fals"'))
    assert main(["check", str(broken)]) == 2
    error = capsys.readouterr().err
    assert f"{broken}: Approval.4: met: `fals` is a bare name" in error
    assert "Traceback" not in error
    assert not list(tmp_path.glob("*.json")), "check writes nothing"


def test_build_names_a_broken_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("policy: {id: x}\n", encoding="utf-8")
    assert main(["build", str(broken), "--out", str(tmp_path), "--docs", str(tmp_path)]) == 2
    assert f"{broken}: invalid policy file" in capsys.readouterr().err


@pytest.fixture()
def response_file(tmp_path: Path) -> Path:
    package = package_for(bundled_catalog(), "eocco329", "initial")
    path = tmp_path / "response.json"
    path.write_text(
        json.dumps(fill(package, base_answers("eocco329", "initial_met"))), encoding="utf-8"
    )
    return path


def test_score_prints_the_determination(
    response_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", str(response_file), "--as-of", "2026-11-24"]) == 0
    determination = json.loads(capsys.readouterr().out)
    assert determination["outcome"] == "approved"
    assert determination["authorization"] == {
        "start": "2026-11-24",
        "end": "2027-05-23",
        "months": 6,
    }


@pytest.mark.parametrize(("fmt", "expected"), [("text", "DECISION: Approved"), ("html", "<!doctype html>"),
                                               ("fhir", '"resourceType": "ClaimResponse"')])  # fmt: skip
def test_score_formats(
    response_file: Path, capsys: pytest.CaptureFixture[str], fmt: str, expected: str
) -> None:
    assert main(["score", str(response_file), "--as-of", "2026-11-24", "--format", fmt]) == 0
    assert expected in capsys.readouterr().out


def test_score_refuses_bad_input_with_an_operation_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"resourceType": "QuestionnaireResponse", "status": "completed"}', encoding="utf-8"
    )
    assert main(["score", str(bad)]) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "must name its Questionnaire" in outcome["issue"][0]["diagnostics"]


def test_score_rejects_a_bad_date(response_file: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["score", str(response_file), "--as-of", "24/11/2026"])
    assert caught.value.code == 2


def test_score_reads_only_the_policy_the_response_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dtr score` builds the catalog of the response's policy alone (its
    archived versions with it): a response to an earlier version is carried
    over as the service does it; an unknown version of a known form lists
    that form's versions; a form no policy has is refused as by the whole
    catalog."""
    earlier = json.loads((ROOT / "examples" / "eocco329-initial-approved.json").read_text("utf-8"))
    url = earlier["questionnaire"].split("|")[0]
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps({**earlier, "questionnaire": f"{url}|1.2.0-r3"}), "utf-8")
    assert main(["score", str(path), "--as-of", "2026-11-24"]) == 0
    said = capsys.readouterr()
    assert json.loads(said.out)["outcome"] == "approved"
    assert "an earlier version; its answers were carried over" in said.err
    path.write_text(json.dumps({**earlier, "questionnaire": f"{url}|9.9.9-r1"}), "utf-8")
    assert main(["score", str(path)]) == 1
    problem = json.loads(capsys.readouterr().out)["issue"][0]["diagnostics"]
    assert "has no version 9.9.9-r1 (known: 1.0.0-r1" in problem
    path.write_text(json.dumps({**earlier, "questionnaire": f"{url}-none|1.0.0-r1"}), "utf-8")
    assert main(["score", str(path)]) == 1
    assert json.loads(capsys.readouterr().out)["resourceType"] == "OperationOutcome"


def test_the_catalog_of_one_response_decides_as_the_whole_catalog() -> None:
    """Every case-table response and example of the bundled policies: the
    catalog made for it alone gives the whole determination the service's
    catalog gives."""
    from datetime import date

    from qpackage.catalog import Catalog, score_json
    from tests.support.cases import AS_OF, load_scoring_cases

    whole = bundled_catalog()
    scoped: dict[str, Catalog] = {}
    responses: list[tuple[dict[str, object], date]] = []
    for param in load_scoring_cases():
        (case,) = param.values
        if not case.get("folder"):
            package = package_for(whole, case["policy"], case["request"], case.get("drug"))
            responses.append((fill(package, case["answers"]), case.get("as_of", AS_OF)))
    for path in sorted((ROOT / "examples").glob("*.json")):
        responses.append((json.loads(path.read_text(encoding="utf-8")), AS_OF))
    for response, as_of in responses:
        key = str(response["questionnaire"]).split("|")[0]
        if key not in scoped:
            scoped[key] = Catalog.for_response(response)
            assert len(scoped[key].policies) == 1
        alone = score_json(scoped[key], response, as_of).to_json()
        assert alone == score_json(whole, response, as_of).to_json()
    assert len(responses) > 150
