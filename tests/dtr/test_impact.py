"""`dtr impact`: every stored request of a policy re-scored under a new
version, through the command line, on a store filled through the API
(tests/cases/impact.yaml): what each change reports, the same report from a
version given by path or by the folder's file, a store of an older schema
migrated first, and bad input refused with exit 2 and nothing written."""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml

from dtr.cli import main
from qpackage.catalog import Catalog
from service.migrations import LATEST
from service.store import SQLiteStore
from tests.service.store_checks import write_old_database
from tests.support.callers import People
from tests.support.impact import POLICY, SOURCE, TABLE, database, edited, submit_table
from tests.support.paths import ROOT


@pytest.fixture()
def stored(app: Any, people: People, catalog: Catalog) -> dict[str, str]:
    """The table's requests submitted to the service: record id → name."""
    return submit_table(people, catalog)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("change", TABLE["changes"], ids=lambda c: c["name"])
def test_the_report_of_a_change(
    change: dict[str, Any],
    app: Any,
    stored: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    new = edited(tmp_path / "new", change["set"])
    command = ["impact", POLICY, "--to", str(new), "--db", database(app)]
    assert main([*command, "--format", "csv"]) == 0
    out = capsys.readouterr()
    rows = rows_of(out.out)
    assert f"re-scored {len(stored)} requests of {POLICY}" in out.err
    assert len(rows) == len(stored)
    assert Counter(f"{r['before']} → {r['after']}" for r in rows) == change["transitions"]
    assert sum(r["changed"] == "yes" for r in rows) == change["changed"]
    after = {stored[r["record"]]: r["after"] for r in rows}
    assert {name: after[name] for name in change["after"]} == change["after"]
    for row in rows:
        assert row["case"] == f"/review/{row['record']}"
        assert row["new_questionnaire"].split("|")[1].startswith(f"{TABLE['version']}-r")
    cited = Counter(s for r in rows for s in r["cited"].split("; ") if s)
    assert cited == change["cited"]
    gone = Counter(s for r in rows for s in r["no_longer_cited"].split("; ") if s)
    assert gone == change["no_longer_cited"]
    periods = [r for r in rows if r["authorization_before"] != r["authorization_after"]]
    assert len(periods) == change["periods"]
    quantities = [r for r in rows if r["quantity_before"] != r["quantity_after"]]
    assert len(quantities) == change["quantities"]
    pending = [r for r in rows if r["after"].startswith("pended") and r["new_questions"]]
    asked = Counter(q for r in pending for q in r["new_questions"].split("; "))
    assert asked == change["questions"]

    # the text report says the same, with examples linking to the cases
    assert main(command) == 0
    text = capsys.readouterr().out
    assert f"{change['changed']} would be decided differently" in text
    for transition, count in change["transitions"].items():
        assert f"{count:6d}  {transition}" in text
    changed = [r for r in rows if r["changed"] == "yes"]
    for row in changed[:1]:
        assert f"{row['record']} ({row['reference']}) /review/{row['record']}" in text
    for link, count in change["questions"].items():
        assert f"{count:6d}  {link} (new in {TABLE['version']})" in text

    # and the HTML report, written to a file
    page = tmp_path / "impact.html"
    assert main([*command, "--format", "html", "--out", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    for row in changed[:1]:
        assert f'<a href="/review/{row["record"]}">' in html
    for shown in change.get("html", []):
        assert shown in html
    assert "<signed>" not in html


def test_a_version_of_the_folders_file_reports_as_the_same_file_by_path(
    app: Any, stored: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version edited in the policy folder and not yet built (so not
    released) is named by its version."""
    change = TABLE["changes"][0]["set"]
    folder = tmp_path / "payer"
    edited(folder, change)
    released = ROOT / "questionnaires"
    (folder / "questionnaires" / "released").mkdir(parents=True)
    (folder / "questionnaires" / "cql").mkdir()
    for path in released.glob(f"released/*{POLICY}-*"):
        shutil.copy(path, folder / "questionnaires" / "released" / path.name)
    for path in released.glob(f"cql/{POLICY}-*"):
        shutil.copy(path, folder / "questionnaires" / "cql" / path.name)
    by_version = ["impact", POLICY, "--to", TABLE["version"], "--policies", str(folder)]
    assert main([*by_version, "--db", database(app), "--format", "csv"]) == 0
    from_folder = capsys.readouterr().out
    by_path = ["impact", POLICY, "--to", str(edited(tmp_path / "new", change))]
    assert main([*by_path, "--db", database(app), "--format", "csv"]) == 0
    assert capsys.readouterr().out == from_folder
    assert len(rows_of(from_folder)) == len(stored)


def test_a_store_of_an_older_schema_is_migrated_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As every command opens a store: its records then re-score as any."""
    old = tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as db:
        write_old_database(db.execute, "?")
    bumped = tmp_path / "new" / "eocco329.yaml"
    bumped.parent.mkdir()
    text = (ROOT / "policies" / "eocco329.yaml").read_text(encoding="utf-8")
    version = yaml.safe_load(text)["policy"]["version"]
    bumped.write_text(text.replace(f'version: "{version}"', 'version: "9.0.0"', 1))
    assert main(["impact", "eocco329", "--to", str(bumped), "--db", str(old)]) == 0
    out = capsys.readouterr()
    assert "on 2 stored requests (decided under 1.1.0-r2)" in out.out
    store = SQLiteStore(old)
    try:
        assert store.migrated == (LATEST, LATEST)
    finally:
        store.close()


@pytest.mark.parametrize("case", TABLE["refused"], ids=lambda c: c["name"])
def test_bad_input_is_refused_with_nothing_written(
    case: dict[str, Any],
    app: Any,
    stored: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = database(app)
    if case.get("store") == "other-policy":
        db = str(tmp_path / "empty.sqlite3")
        SQLiteStore(db).close()
    elif case.get("store") == "none":
        db = str(tmp_path / "none.sqlite3")
    elif case.get("store") == "newer":
        with app.state.store.database() as connection:
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 1,))
    to = case["to"]
    if to == "edited":
        to = str(edited(tmp_path / "new", case.get("set", {})))
    elif to == "current":
        to = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))["policy"]["version"]
    elif to.endswith(".yaml"):
        to = str(tmp_path / to)
    out = tmp_path / "report.csv"
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["impact", case.get("policy", POLICY), "--to", to, "--db", db, "--out", str(out)])
    error = capsys.readouterr().err
    assert code == 2, error
    assert case["message"] in error
    assert "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "nothing written"


def test_a_run_stopped_midway_resumes_to_the_same_report(
    app: Any,
    stored: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Interrupted at its third request (parts of two: one part kept), the
    run resumes after the kept part and reports as a run never stopped."""
    import qpackage.impact

    new = edited(tmp_path / "new", TABLE["changes"][0]["set"])
    command = [
        "impact", POLICY, "--to", str(new), "--db", database(app), "--batch", "2", "--workers", "1",
    ]  # fmt: skip
    parts = -(-len(stored) // 2)
    rescore = qpackage.impact.rescore
    calls = []

    def stopping(*args: Any) -> Any:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as SIGINT stops it
        return rescore(*args)

    monkeypatch.setattr(qpackage.impact, "rescore", stopping)
    with pytest.raises(KeyboardInterrupt):
        main([*command, "--format", "csv"])
    monkeypatch.setattr(qpackage.impact, "rescore", rescore)
    capsys.readouterr()
    assert main([*command, "--format", "csv"]) == 0
    resumed = capsys.readouterr()
    assert f"resuming: 1 of {parts} parts already kept" in resumed.err
    assert f"re-scored {len(stored) - 2} requests" in resumed.err
    # the finished run's progress is dropped: the same command starts afresh
    assert main([*command, "--format", "csv"]) == 0
    afresh = capsys.readouterr()
    assert "resuming" not in afresh.err
    assert resumed.out == afresh.out
    assert len(rows_of(afresh.out)) == len(stored)

    # the text report too, resumed from a run stopped in its second part
    calls.clear()
    monkeypatch.setattr(qpackage.impact, "rescore", stopping)
    with pytest.raises(KeyboardInterrupt):
        main(command)
    monkeypatch.setattr(qpackage.impact, "rescore", rescore)
    assert main(command) == 0
    text = capsys.readouterr().out
    assert main(command) == 0
    assert capsys.readouterr().out == text
    with app.state.store.database() as db:
        for table in ("impact_parts", "impact_runs"):
            assert db.execute(f"SELECT count(*) FROM {table}")[0][0] == 0, table
    # each finished run's report kept for the pharmacist's page, its rows with it
    reports = app.state.store.impact_runs()
    assert len(reports) == 4 and all(r.finished for r in reports)
    assert {r.total for r in reports} == {len(stored)}


def _copies(db: Any, count: int, mark: str) -> None:
    """``count`` copies of the stored records (new ids, response keys and
    references), so that a run has parts enough to be stopped among them."""
    from service.store import COLUMNS

    rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM determinations")
    marks = ", ".join([mark] * len(COLUMNS))
    at = {name: COLUMNS.index(name) for name in ("id", "response_key", "reference")}
    for n in range(count):
        row = list(rows[n % len(rows)])
        row[at["id"]] = f"copy-{n:05d}-{row[at['id']]}"
        row[at["response_key"]] = f"copy-{n}-{row[at['response_key']]}"
        row[at["reference"]] = f"C{n:09d}"
        db.execute(f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({marks})", row)


def test_worker_processes_give_the_report_of_one(
    app: Any, stored: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same change re-scored by this process alone, and by two worker
    processes in parts of another size: the same CSV and text reports."""
    with app.state.store.connections.writing() as db:
        _copies(db, 60, "?")
    new = edited(tmp_path / "new", TABLE["changes"][2]["set"])
    base = ["impact", POLICY, "--to", str(new), "--db", database(app)]
    reports = {}
    for workers, batch in (("1", "500"), ("2", "7")):
        for form in ("csv", "text"):
            assert main([*base, "--workers", workers, "--batch", batch, "--format", form]) == 0
            out = capsys.readouterr()
            assert f"re-scored {len(stored) + 60} requests" in out.err
            assert f"{workers} worker" in out.err
            reports[(workers, form)] = out.out
    assert reports[("1", "csv")] == reports[("2", "csv")]
    assert reports[("1", "text")] == reports[("2", "text")]
    assert len(rows_of(reports[("2", "csv")])) == len(stored) + 60


def _impact_process(command: list[str]) -> subprocess.Popen[str]:
    """`dtr impact` as its own process (in its own process group, so that a
    kill reaches its workers too)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dtr", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_a_killed_run_resumes_to_the_same_report(
    app: Any, stored: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dtr impact` with two workers killed (SIGKILL) once some of its parts
    are kept: the same command takes up the rest, and its report is the
    report of a run never stopped."""
    with app.state.store.connections.writing() as db:
        _copies(db, 400, "?")
    new = edited(tmp_path / "new", TABLE["changes"][0]["set"])
    out = tmp_path / "resumed.csv"
    command = [
        "impact", POLICY, "--to", str(new), "--db", database(app), "--batch", "10",
        "--workers", "2", "--format", "csv", "--out", str(out),
    ]  # fmt: skip
    running = _impact_process(command)
    parts = -(-(len(stored) + 400) // 10)
    kept = 0
    deadline = time.monotonic() + 120
    with closing(sqlite3.connect(database(app), timeout=30)) as watch:
        while running.poll() is None and time.monotonic() < deadline:
            try:
                kept = watch.execute(
                    "SELECT count(*) FROM impact_parts WHERE done_at IS NOT NULL"
                ).fetchone()[0]
            except sqlite3.OperationalError:  # the table is made as the store opens
                kept = 0
            if kept >= 3:
                os.killpg(running.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    printed = running.communicate(timeout=60)[1]
    assert running.returncode == -signal.SIGKILL, f"it finished first: {printed}"
    assert 3 <= kept < parts and not out.exists()

    assert main(command) == 0
    resumed = capsys.readouterr().err
    assert "resuming:" in resumed and f"of {parts} parts already kept" in resumed
    whole = tmp_path / "whole.csv"
    assert main([*command[:-1], str(whole)]) == 0  # afresh: the finished run was dropped
    assert "resuming" not in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == whole.read_text(encoding="utf-8")
    assert len(rows_of(whole.read_text(encoding="utf-8"))) == len(stored) + 400


def test_two_machines_share_a_run_on_postgresql(
    postgres: str, app: Any, stored: dict[str, str], tmp_path: Path
) -> None:
    """Two `dtr impact` processes given the same command on one PostgreSQL
    store (as two machines would be): each claims parts the other does not
    hold (FOR UPDATE SKIP LOCKED), one writes the report, and it is the
    report one process makes on the same records in SQLite."""
    import psycopg

    from service.store import PostgresStore

    with app.state.store.connections.writing() as db:
        _copies(db, 200, "?")
    url = postgres.rsplit("/", 1)[0] + "/impact_shared"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute("CREATE DATABASE impact_shared")
    PostgresStore(url).close()  # the schema made
    with closing(sqlite3.connect(database(app))) as source, psycopg.connect(url) as target:
        from service.store import COLUMNS

        rows = source.execute(f"SELECT {', '.join(COLUMNS)} FROM determinations").fetchall()
        marks = ", ".join(["%s"] * len(COLUMNS))
        with target.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({marks})", rows
            )
    new = edited(tmp_path / "new", TABLE["changes"][0]["set"])
    outs = [tmp_path / "first.csv", tmp_path / "second.csv"]
    command = ["impact", POLICY, "--to", str(new), "--db", url, "--batch", "10", "--workers", "1"]
    machines = [_impact_process([*command, "--format", "csv", "--out", str(out)]) for out in outs]
    errors = [machine.communicate(timeout=300)[1] for machine in machines]
    assert [m.returncode for m in machines] == [0, 0], errors
    written = [out for out in outs if out.exists()]
    assert len(written) == 1, errors  # one process finished the run and wrote the report
    assert sum("written by the process that finished it" in e for e in errors) == 1
    with psycopg.connect(url) as db:
        done_by = db.execute("SELECT count(*) FROM impact_parts").fetchone()
        assert done_by is not None and done_by[0] == 0  # the finished run dropped
    alone = tmp_path / "alone.csv"
    command = ["impact", POLICY, "--to", str(new), "--db", database(app), "--workers", "1"]
    assert main([*command, "--format", "csv", "--out", str(alone)]) == 0
    assert written[0].read_text(encoding="utf-8") == alone.read_text(encoding="utf-8")
