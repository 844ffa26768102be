"""Refusal messages read by the author of a policy file, through `dtr check`:
each problem printed once, no empty quotation of a part of an expression, a
generated section (quantity limits, term, cap) named by the data it comes
from, and limits of one form in mixed units refused naming both limits."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtr.cli import main
from tests.support.paths import ROOT
from tests.support.policy_edits import edit


@pytest.mark.cases("refusal_messages.yaml")
def test_refusal_message(
    case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = ROOT / case["policy"]
    policy = tmp_path / original.name
    if case.get("set"):
        data = yaml.safe_load(original.read_text(encoding="utf-8"))
        for path, value in case["set"].items():
            edit(data, path, value)
        policy.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    else:
        shutil.copy(original, policy)
    refused = case.get("refused", True)
    assert main(["check", str(policy)]) == (2 if refused else 0)
    printed = capsys.readouterr().err
    if not refused:
        assert printed == ""
        return
    lines = [line for line in printed.splitlines() if line.startswith("  - ")]
    assert lines and all(line.startswith(f"  - {policy}: ") for line in lines), printed
    repeated = [line for line, n in collections.Counter(lines).items() if n > 1]
    assert not repeated, f"printed more than once: {repeated}"
    assert "''" not in printed
    assert "Traceback" not in printed
    for expected in case["expect"]:
        assert expected in printed
    for unwanted in case.get("absent", []):
        assert unwanted not in printed
