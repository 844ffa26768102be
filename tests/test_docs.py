"""The documentation's examples run as written: "Add a policy in ten
minutes" in docs/policy-format.md, from its own YAML, JSON and commands; the
example determination in docs/api.md is what `dtr score` prints; every `dtr`
command in the README and docs/cli.md parses, and its `dtr score` commands
run; every route the README and the references call is one the service
serves; every relative link in the README and docs/ leads to a file (and
heading) that exists; and every project path they name exists."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dtr.cli import main, parser
from qpackage.catalog import Catalog
from service.app import create_app
from service.settings import Settings

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


def test_the_api_reference_determination_is_what_dtr_score_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    command = "dtr score examples/eocco329-initial-approved.json --as-of 2026-11-24"
    shown = reference[reference.index(f"The determination JSON (`{command}`)") :]
    expected = json.loads(_blocks(shown, "json")[0])
    example = ROOT / "examples" / "eocco329-initial-approved.json"
    assert main(["score", str(example), "--as-of", "2026-11-24"]) == 0
    assert json.loads(capsys.readouterr().out) == expected


def _dtr_commands(*documents: str) -> list[str]:
    """Every line of a ``sh`` block that calls ``dtr`` (or ``.venv/bin/dtr``)."""
    found = []
    for name in documents:
        for block in _blocks((ROOT / name).read_text(encoding="utf-8"), "sh"):
            for line in block.splitlines():
                command = line.strip().removeprefix(".venv/bin/")
                if command.startswith("dtr "):
                    found.append(command)
    return found


COMMANDS = _dtr_commands("README.md", "docs/cli.md", "docs/review.md", "docs/api.md")


def test_the_references_show_commands() -> None:
    shown = {command.split()[1] for command in COMMANDS}
    assert shown >= {"check", "build", "score", "serve", "errors", "audit", "clients", "users"}
    assert "metrics" in shown


@pytest.mark.parametrize("command", COMMANDS)
def test_every_documented_command_parses(command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    parser().parse_args(argv)  # a wrong command or flag exits (SystemExit)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("dtr score ")])
def test_the_documented_score_commands_run(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(command, comments=True)[1:]) == 0, command
    assert capsys.readouterr().out


_CURL_METHOD = re.compile(r"-X (GET|POST|DELETE|PUT)\b")
_CURL_PATH = re.compile(r"\$B(/[^\s\"'?]*)")


def _documented_routes() -> set[tuple[str, str]]:
    """(method, path) of every curl call on ``$B`` in the README and the references."""
    routes = set()
    for name in ("README.md", "docs/api.md", "docs/review.md"):
        for block in _blocks((ROOT / name).read_text(encoding="utf-8"), "sh"):
            for line in block.splitlines():
                if (
                    not line.lstrip().startswith("curl ")
                    or (path := _CURL_PATH.search(line)) is None
                ):
                    continue
                method = _CURL_METHOD.search(line)
                routes.add(
                    (method.group(1) if method else "GET", path.group(1).replace("\\$", "$"))
                )
    return routes


def test_every_documented_route_is_served(tmp_path: Path, catalog: Catalog) -> None:
    """Asked without credentials, a route that exists answers 401 (or 200 when
    open, a redirect to the sign-in for a page), never 404 or 405."""
    app = create_app(Settings(database=str(tmp_path / "docs.sqlite3")), catalog=catalog)
    documented = _documented_routes()
    assert len(documented) > 20
    with TestClient(app, follow_redirects=False) as client:
        for method, path in sorted(documented):
            answer = client.request(method, re.sub(r"\{[^}]+\}", "x", path))
            assert answer.status_code not in (404, 405), (method, path, answer.status_code)


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page, and its explicit ``<a id>``s."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    anchors = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_relative_link_resolves() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in _LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{page.name}: {target}"


_PROJECT_PATH = re.compile(
    r"`((?:\.ci|access|bench|builder|cql|cql_like|docs|dtr|examples|policies|qpackage"
    r"|questionnaires|review|scoring|scripts|service|tests)/[^`\s]*)`"
)
NOT_COMMITTED = {"service/static/lforms/"}  # installed by scripts/install-lforms


def test_every_project_path_the_docs_name_exists() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for path in _PROJECT_PATH.findall(page.read_text(encoding="utf-8")):
            if path in NOT_COMMITTED or any(mark in path for mark in "{*…|"):
                continue  # a pattern, not a path
            assert (ROOT / path).exists(), f"{page.name}: {path}"
