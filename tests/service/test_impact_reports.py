"""The pharmacist's impact pages (service/impact_reports.py), over HTTP: a run
made by `dtr impact` on a store filled through the API (tests/cases/impact.yaml)
is listed, its report shows the transition counts with examples linking to
the cases (opening one is audited), its CSV is the command's; a run stopped
midway is listed in progress; other callers are refused as the review
refuses them, and an unknown report is a 404."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import qpackage.impact
from dtr.cli import main
from qpackage.catalog import Catalog
from tests.support.callers import ALL_SCOPES, People, authorize
from tests.support.impact import POLICY, TABLE, database, edited, submit_table

# the change that turns the melanoma approvals into pends (a new required document)
CHANGE = TABLE["changes"][0]


@pytest.fixture()
def stored(app: Any, people: People, catalog: Catalog) -> dict[str, str]:
    return submit_table(people, catalog)


def run_impact(app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """`dtr impact` of the change on the service's store, its CSV written to
    a file: the report's page path it names, and that CSV."""
    new = edited(tmp_path / "new", CHANGE["set"])
    out = tmp_path / "impact.csv"
    command = ["impact", POLICY, "--to", str(new), "--db", database(app), "--format", "csv"]
    assert main([*command, "--out", str(out)]) == 0
    said = capsys.readouterr().err
    found = re.search(r"kept for the pharmacist's page at (/impact/[0-9a-f]+)", said)
    assert found, said
    return found[1], out.read_text(encoding="utf-8")


def test_with_no_run_the_page_says_how_to_make_one(people: People) -> None:
    page = people.pharmacist.get("/impact")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="none"' in page.text
    assert "dtr impact POLICY --to VERSION|PATH --db DATABASE" in page.text
    assert 'aria-current="page">Impact reports</a>' in page.text


def test_a_run_is_listed_reported_and_its_csv_is_the_commands(
    app: Any,
    people: People,
    stored: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, written = run_impact(app, tmp_path, capsys)
    pharmacist = people.pharmacist

    listed = pharmacist.get("/impact")
    assert listed.status_code == 200, listed.text
    row = listed.text.split(f'id="run-{path.rsplit("/", 1)[1]}"')[1].split("</tr>")[0]
    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    policy, old, new, started, finished, by, would, state, links = cells
    assert (policy, new, state) == (POLICY, TABLE["version"], "finished")
    assert would == f"{CHANGE['changed']} of {len(stored)}"
    assert old and started and finished and ":" in by  # host:pid of the process
    assert f'href="{path}"' in links and f'href="{path}.csv"' in links

    report = pharmacist.get(path)
    assert report.status_code == 200, report.text
    text = report.text
    for transition, count in CHANGE["transitions"].items():
        assert f'<td class="n">{count}</td><td>{html.escape(transition)}</td>' in text
    for shown in CHANGE["html"]:
        assert shown in text  # escaped, as the command's HTML report
    assert f'href="{path}.csv"' in text
    assert 'aria-current="page">Impact reports</a>' in text

    # each example links to a stored case; opening one is audited
    linked = set(re.findall(r'<a href="/review/([0-9a-f]+)">', text))
    changed = {r for r, name in stored.items() if name in ("melanoma", "melanoma with Tafinlar")}
    assert changed <= linked <= set(stored)
    case = sorted(changed)[0]
    opened = pharmacist.get(f"/review/{case}")
    assert opened.status_code == 200
    record = app.state.store.get(case)
    trail = app.state.store.audit_trail(record.member)
    assert [e.what for e in trail].count(f"review case {case}") == 1
    assert all("user pat (pharmacist)" in e.who for e in trail if e.what.endswith(case))

    download = pharmacist.get(f"{path}.csv")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in download.headers["content-disposition"]
    assert download.text == written
    assert len(written.splitlines()) == len(stored) + 1


def test_a_run_stopped_midway_is_listed_in_progress(
    app: Any,
    people: People,
    stored: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped at its third request (parts of two: one kept), the run shows
    its parts kept of those planned, and no report yet."""
    new = edited(tmp_path / "new", CHANGE["set"])
    rescore, calls = qpackage.impact.rescore, []

    def stopping(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return rescore(*args)

    monkeypatch.setattr(qpackage.impact, "rescore", stopping)
    command = ["impact", POLICY, "--to", str(new), "--db", database(app)]
    with pytest.raises(KeyboardInterrupt):
        main([*command, "--batch", "2", "--workers", "1"])
    page = people.pharmacist.get("/impact").text
    parts = -(-len(stored) // 2)
    assert f"in progress: 1 of {parts} parts kept" in page
    assert 'href="/impact/' not in page  # nothing to open until it finishes
    assert TABLE["version"] in page


@pytest.mark.parametrize("route", ["/impact", "/impact/{id}", "/impact/{id}.csv"])
def test_only_a_pharmacist_sees_the_reports(
    route: str,
    app: Any,
    people: People,
    stored: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A backend client, even one registered for ClaimResponse search and
    update, and an office user get the review's 403; a browser not signed
    in is sent to sign in."""
    path, _ = run_impact(app, tmp_path, capsys)
    url = route.replace("/impact/{id}", path)
    bot = authorize(TestClient(app), "review-bot", f"{ALL_SCOPES} system/ClaimResponse.rus")
    for who, client, said in (
        ("system", bot, "the review is a signed-in pharmacist's, not a system's"),
        ("office", people.office, "role office does not review requests"),
    ):
        reply = client.get(url, follow_redirects=False)
        assert reply.status_code == 403, (who, reply.text)
        outcome = reply.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "forbidden"
        assert said in outcome["issue"][0]["diagnostics"]
        assert POLICY not in reply.text
    anonymous = TestClient(app).get(url, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/signin?next={url}"
    assert people.pharmacist.get(url).status_code == 200


@pytest.mark.parametrize("url", ["/impact/0123abcd", "/impact/0123abcd.csv"])
def test_an_unknown_report_is_a_404(url: str, people: People) -> None:
    reply = people.pharmacist.get(url)
    assert reply.status_code == 404
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "not-found"
    assert "0123abcd" in outcome["issue"][0]["diagnostics"]
