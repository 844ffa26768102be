"""The documentation's walkthrough runs as written: "Add a policy in ten
minutes" in docs/policy-format.md, from its own YAML, JSON and commands, and
the README's example response."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dtr.cli import main

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "policy-format.md"


def _walkthrough() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text[text.index("## Add a policy in ten minutes") :]


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_add_a_policy_in_ten_minutes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    guide = _walkthrough()
    policy = _blocks(guide, "yaml")[0]
    response = _blocks(guide, "json")[0]
    commands = _blocks(guide, "sh")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mypolicies").mkdir()
    (tmp_path / "mypolicies" / "acme-examplinib.yaml").write_text(policy, encoding="utf-8")
    (tmp_path / "response.json").write_text(response, encoding="utf-8")
    json.loads(response)  # the example is valid JSON

    for block in commands[:3]:  # check, build, score: run each as the guide shows it
        command, *expected = block.rstrip("\n").split("\n")
        argv = command.removeprefix("$ dtr ").split()
        assert main(argv) == 0, command
        printed = capsys.readouterr().out.rstrip("\n").split("\n")
        if argv[0] == "check":
            assert printed[0] == expected[0]  # the timing line differs run to run
        else:
            assert printed == expected, command


def test_the_readme_determination_is_what_dtr_score_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = "dtr score examples/eocco329-initial-approved.json --as-of 2026-11-24"
    shown = readme[readme.index(f"The determination JSON (`{command}`)") :]
    expected = json.loads(_blocks(shown, "json")[0])
    example = ROOT / "examples" / "eocco329-initial-approved.json"
    assert main(["score", str(example), "--as-of", "2026-11-24"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
