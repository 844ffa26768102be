"""The PostgreSQL store: several service instances sharing one database.

On the throw-away PostgreSQL cluster of the run (the ``postgres`` fixture,
tests/support/postgres.py).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from service.store import PostgresStore
from tests.support.callers import authorize
from tests.support.cases import package_for
from tests.support.dtr_requests import FHIR


@pytest.fixture(scope="module")
def database(postgres: str) -> str:
    """The cluster's own database (the tests of other stores make their own)."""
    return postgres


def body(catalog: Catalog, response_id: str) -> str:
    answers = {"requested_product": "0078-0666", "requested_quantity": 60, "indication": "Melanoma"}
    return json.dumps(
        fill(package_for(catalog, "mn-dhs-mekinist", "initial"), answers, response_id=response_id)
    )


def test_two_instances_share_one_store(database: str, catalog: Catalog) -> None:
    def instance() -> TestClient:
        settings = Settings(database=database)
        app = create_app(settings, catalog=catalog, clock=lambda: date(2026, 11, 24))
        return authorize(TestClient(app))

    first, second = instance(), instance()
    assert isinstance(first.app.state.store, PostgresStore)  # type: ignore[attr-defined]
    created = first.post(
        "/QuestionnaireResponse/$evaluate", content=body(catalog, "pg-1"), headers=FHIR
    )
    assert created.status_code == 201, created.text
    record = created.json()["id"]
    assert second.get(f"/determinations/{record}").json()["outcome"] == "pended"
    resent = second.post(
        "/QuestionnaireResponse/$evaluate", content=body(catalog, "pg-1"), headers=FHIR
    )
    assert resent.status_code == 200 and resent.json()["id"] == record

    bodies = [body(catalog, f"pg-many-{n}") for n in range(24)]

    def submit(n: int) -> int:
        client = first if n % 2 else second
        return client.post(
            "/QuestionnaireResponse/$evaluate", content=bodies[n], headers=FHIR
        ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(submit, range(len(bodies)))) == [201] * len(bodies)
    assert first.app.state.store.count() == len(bodies) + 1  # type: ignore[attr-defined]
    first.app.state.store.close()  # type: ignore[attr-defined]
    second.app.state.store.close()  # type: ignore[attr-defined]


def test_a_url_opens_the_postgres_store(database: str) -> None:
    from service.store import open_store

    store = open_store(database)
    assert isinstance(store, PostgresStore)
    store.close()


def test_a_store_of_the_previous_release_migrates_and_serves_its_records(database: str) -> None:
    import psycopg

    from tests.service.store_checks import check_served, check_store, write_old_database

    with psycopg.connect(database, autocommit=True) as db:
        # every table the other tests' instances made: the database as the
        # previous release left it has the determinations table alone
        tables = db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
        for (table,) in tables:
            db.execute(f"DROP TABLE {table}")
        write_old_database(lambda sql, args: db.execute(sql, args) and None, "%s")
    store = PostgresStore(database)
    try:
        check_store(store)
    finally:
        store.close()
    check_served(database)


def test_two_servers_start_together_on_one_fresh_database(database: str, tmp_path: Path) -> None:
    """The first start on PostgreSQL (tests/service/test_first_start.py): a new
    database, two `dtr serve` at once, both serving, one first user."""
    import psycopg

    from tests.service.test_first_start import check_both_serve

    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE DATABASE first_start")
    check_both_serve(database.rsplit("/", 1)[0] + "/first_start", tmp_path)


def test_the_first_user_is_made_once_however_many_try(database: str) -> None:
    import psycopg

    from service.accounts import Accounts
    from tests.service.test_first_start import race_for_the_first_user

    with psycopg.connect(database, autocommit=True) as db:
        db.execute("CREATE DATABASE first_user")
    stores = [PostgresStore(database.rsplit("/", 1)[0] + "/first_user") for _ in range(4)]
    try:
        made = race_for_the_first_user([Accounts(s) for s in stores])
        assert sorted(u is not None for u in made) == [False, False, False, True]
    finally:
        for store in stores:
            store.close()


def test_a_reply_joins_its_record_on_postgres(database: str, catalog: Catalog) -> None:
    """A backend client's reply to the scorer's pend (``$evaluate`` with the
    request as context, a note and a document): the same record, seen by
    another instance with the reply's receipt and note."""
    import base64

    def instance() -> TestClient:
        settings = Settings(database=database)
        app = create_app(settings, catalog=catalog, clock=lambda: date(2026, 11, 24))
        return authorize(TestClient(app))

    first, second = instance(), instance()
    created = first.post(
        "/QuestionnaireResponse/$evaluate", content=body(catalog, "pg-reply"), headers=FHIR
    )
    record = created.json()["id"]
    assert second.get(f"/determinations/{record}").json()["outcome"] == "pended"
    stored = first.app.state.store.count()  # type: ignore[attr-defined]
    document = {"contentType": "application/pdf", "title": "chart.pdf",
                "data": base64.b64encode(b"%PDF-1.4\n").decode()}  # fmt: skip
    reply = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "response", "resource": json.loads(body(catalog, "pg-reply"))},
            {"name": "context", "valueString": record},
            {"name": "note", "valueString": "The chart is attached."},
            {"name": "document", "valueAttachment": document},
        ],
    }
    sent = second.post("/QuestionnaireResponse/$evaluate", content=json.dumps(reply), headers=FHIR)
    assert sent.status_code == 200 and sent.json()["id"] == record, sent.text
    seen = first.get(f"/determinations/{record}").json()
    assert seen["reply"]["note"] == "The chart is attached." and seen["reply"]["documents"] == 1
    # no new record
    assert first.app.state.store.count() == stored  # type: ignore[attr-defined]
    first.app.state.store.close()  # type: ignore[attr-defined]
    second.app.state.store.close()  # type: ignore[attr-defined]


def test_an_impact_report_reads_and_resumes_on_postgres(
    database: str, catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dtr impact` on the PostgreSQL store: every request of the policy
    re-scored in batches, and a run interrupted midway resumes to the same
    report."""
    import csv
    import io

    import qpackage.impact
    from dtr.cli import main
    from tests.support.paths import ROOT

    settings = Settings(database=database)
    client = authorize(TestClient(create_app(settings, catalog=catalog)))
    for n in range(5):
        sent = client.post(
            "/QuestionnaireResponse/$evaluate",
            content=body(catalog, f"pg-impact-{n}"),
            headers=FHIR,
        )
        assert sent.status_code == 201, sent.text
    stored = client.app.state.store.count("mn-dhs-mekinist")  # type: ignore[attr-defined]
    client.app.state.store.close()  # type: ignore[attr-defined]
    text = (ROOT / "policies" / "mn-dhs-mekinist.yaml").read_text(encoding="utf-8")
    new = tmp_path / "mn-dhs-mekinist.yaml"
    new.write_text(text.replace("  version: ", '  version: "9.0.0"  # was ', 1), encoding="utf-8")
    # one worker: the stand-in below runs in this process
    command = [
        "impact", "mn-dhs-mekinist", "--to", str(new), "--db", database, "--batch", "2",
        "--workers", "1",
    ]  # fmt: skip

    rescore, calls = qpackage.impact.rescore, []

    def stopping(*args: object) -> qpackage.impact.Change:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return rescore(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(qpackage.impact, "rescore", stopping)
        with pytest.raises(KeyboardInterrupt):
            main(command)
    capsys.readouterr()
    store = PostgresStore(database)
    try:
        # the run stopped in its second part, as the pharmacist's page lists it
        [going] = store.impact_runs()
        assert (going.finished, going.done, going.planned) == (False, 1, -(-stored // 2))
        assert (going.policy, going.new_version) == ("mn-dhs-mekinist", "9.0.0")
    finally:
        store.close()
    assert main([*command, "--format", "csv"]) == 0
    resumed = capsys.readouterr()
    assert f"resuming: 1 of {-(-stored // 2)} parts already kept" in resumed.err
    assert len(list(csv.DictReader(io.StringIO(resumed.out)))) == stored
    assert main([*command, "--format", "csv"]) == 0
    assert capsys.readouterr().out == resumed.out
    # both finished runs' reports kept, each with the rows the command wrote
    store = PostgresStore(database)
    try:
        reports = store.impact_runs()
        assert [(r.finished, r.total) for r in reports] == [(True, stored), (True, stored)]
        found = store.impact_report(reports[0].id)
        assert found is not None and found[1]["total"] == stored
        rows = "".join(store.impact_rows(reports[0].id))
        assert resumed.out.split("\n", 1)[1] == rows
    finally:
        store.close()
