"""`dtr lint`: a policy's data against its own words, through the command
line — each kind of finding on an edited fixture (tests/cases/lint.yaml),
and the bundled policies, which lint clean."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtr.cli import main
from tests.support.paths import FIXTURES
from tests.support.policy_edits import edit

FIXTURE = FIXTURES / "lint"


@pytest.mark.cases("lint.yaml")
def test_lint_finds(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    policy = tmp_path / "zetanib.yaml"
    data = yaml.safe_load(policy.read_text(encoding="utf-8"))
    for path, value in (case.get("set") or {}).items():
        if path.startswith("source_text.acknowledged.") and path.endswith(".1"):
            data["source_text"]["acknowledged"].append(value)
        else:
            edit(data, path, value)
    if "delete" in case:
        edit(data, case["delete"], delete=True)
    policy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if "text" in case:
        old, new = case["text"]
        source = tmp_path / "zetanib.txt"
        text = source.read_text(encoding="utf-8")
        assert old in text, f"the case edits words the fixture's text does not hold: {old!r}"
        source.write_text(text.replace(old, new, 1), encoding="utf-8")

    status = main(["lint", str(policy)])

    out = capsys.readouterr()
    printed = out.out + out.err
    assert status == case["exit"], printed
    for line in case.get("prints", []):
        assert line in printed
    for line in case.get("not_prints", []):
        assert line not in printed


def test_the_bundled_policies_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["lint"])

    printed = capsys.readouterr().out
    assert status == 0, printed
    # each acknowledgement printed with its reason; none of the bundled
    # policies leaves a criterion unquoted without its reason
    assert printed.splitlines()[-1] == "0 findings, 8 acknowledged"
