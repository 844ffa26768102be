"""Worked examples through ``dtr check``: a policy mistake that builds and
decides wrong caught by one example, a malformed example refused naming the
file, the example and the field, the coverage rule enforced; and the bundled
policies' examples run clean and cover their criteria and approval paths.

The fixture tests/fixtures/policies/examples/ checks clean as written; each
case of tests/cases/example_errors.yaml edits one of its files in a copy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtr.cli import main
from policies.loader import bundled_policy_files, load_examples, load_policy
from qpackage.examples import run_examples
from tests.support.paths import FIXTURES
from tests.support.policy_edits import edit

FOLDER = FIXTURES / "examples"


def test_the_fixture_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--policies", str(FOLDER)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "fixture-examples 1.0.0: verified",
        "  worked examples: 11 run, 11 as expected; criteria cited 4/4; approval paths taken 2/2",
        # the fixture names no source text, so its criterion's quote is a finding
        "  lint: 0 quotes, 0 acknowledged, 1 finding (dtr lint)",
    ]


@pytest.mark.cases("example_errors.yaml")
def test_refused(tmp_path: Path, case: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(FIXTURES / case.get("folder", "examples"), folder)
    path = folder / case["file"]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for change in [case, *([case["also"]] if "also" in case else [])]:
        edit(data, change["path"], change["value"])
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    assert main(["check", "--policies", str(folder)]) == 2
    err = capsys.readouterr().err
    assert case["refused"] in err, err


def test_build_refuses_a_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``dtr build`` runs the examples too, and writes nothing when one fails."""
    folder = tmp_path / "policies"
    shutil.copytree(FOLDER, folder)
    policy = folder / "worked.yaml"
    policy.write_text(
        policy.read_text(encoding="utf-8").replace("%lvef >= 50", "%lvef > 55"), encoding="utf-8"
    )
    assert main(["build", "--policies", str(folder)]) == 2
    assert "example 'every criterion met': outcome: expected 'approved', got 'denied'" in (
        capsys.readouterr().err
    )
    assert not (folder / "questionnaires").exists()


def test_a_policy_without_examples_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(FIXTURES / "constructs" / "no-limit.yaml")]) == 0
    out = capsys.readouterr().out
    assert "fixture-no-limit 1.0.0: verified\n  no worked examples (no-limit.examples.yaml" in out


def test_examples_without_their_policy_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy renamed away from its examples: they would never run again."""
    folder = tmp_path / "policies"
    shutil.copytree(FOLDER, folder)
    (folder / "worked.yaml").rename(folder / "zetanib.yaml")
    assert main(["check", "--policies", str(folder)]) == 2
    assert (
        "worked.examples.yaml: worked examples of no policy: there is no worked.yaml beside it"
        in capsys.readouterr().err
    )


def test_an_examples_file_named_as_a_policy_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", str(FOLDER / "worked.examples.yaml")]) == 2
    assert "holds worked examples, not a policy: name the policy file (worked.yaml)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("path", bundled_policy_files(), ids=lambda p: p.name)
def test_bundled_examples_run_clean_and_cover_the_policy(path: Path) -> None:
    """Every bundled policy carries worked examples; each decides as
    written, every criterion is cited by one and every approval path taken."""
    found = load_examples(path)
    assert found is not None, f"{path.name} has no worked examples"
    report = run_examples(load_policy(path), found[1], str(found[0]))
    assert report.problems == []
    assert report.uncited == [] and report.untaken == []
    assert report.run == len(found[1].cases)
