"""Checks every store (SQLite, PostgreSQL) must pass: a database written by
the release before schema versions (the determinations table alone, no
member column) opens, migrates to the latest version and serves its old
records (to the payer's pharmacist: they predate record owners); the approvals of a member are found by policy; error reports are
kept and listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from service.migrations import LATEST
from service.store import ErrorReport, Record, Store
from tests.support.cases import bundled_catalog

# the determinations table as the previous release created it (no member)
OLD_SCHEMA = """
CREATE TABLE determinations (
    id TEXT PRIMARY KEY, response_key TEXT NOT NULL UNIQUE, response_id TEXT,
    request_id TEXT NOT NULL, received_at TEXT NOT NULL, questionnaire TEXT NOT NULL,
    policy TEXT NOT NULL, policy_version TEXT NOT NULL, evaluated_at TEXT NOT NULL,
    outcome TEXT NOT NULL, response TEXT NOT NULL, determination TEXT NOT NULL,
    claim_response TEXT NOT NULL
)
"""
QUESTIONNAIRE = "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial|1.1.0-r2"


def old_row(rid: str, subject: str, answers: str) -> tuple[Any, ...]:
    """A record as the previous release stored it: a response to its EOCCO329
    Questionnaire (1.1.0-r2), its determination and ClaimResponse."""
    from datetime import date

    from scoring import score
    from scoring.fhir_outputs import claim_response
    from scoring.fill import fill
    from tests.support.cases import base_answers

    catalog = bundled_catalog()
    package = catalog.packages[QUESTIONNAIRE]
    response = fill(package, base_answers("eocco329", answers), subject=subject)
    # decided under that version, as the previous release did
    determination = score(package, response, date(2026, 11, 1))
    return (
        rid, f"key-{rid}", None, "r", "2026-11-01T00:00:00+00:00", QUESTIONNAIRE, "eocco329",
        "1.1.0", "2026-11-01", determination.outcome, json.dumps(response),
        json.dumps(determination.to_json()), json.dumps(claim_response(determination, rid)),
    )  # fmt: skip


def write_old_database(execute: Callable[[str, tuple[Any, ...]], object], mark: str) -> None:
    """Two records of the previous release: an approval of Patient/old, and an
    investigational finding."""
    execute(OLD_SCHEMA, ())
    insert = f"INSERT INTO determinations VALUES ({', '.join([mark] * 13)})"
    execute(insert, old_row("old-approved", "Patient/old", "initial_met"))
    execute(insert, old_row("old-denied", "Patient/old", "not_lgsoc"))


def check_served(database: str) -> None:
    """The service opens the migrated database and serves the old records."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.support.callers import add_user, sign_in

    with TestClient(create_app(Settings(database=database))) as client:
        # stored before callers authenticated, they have no owner: the
        # payer's pharmacists read them
        add_user(client.app.state.store, "pharmacist", "pharmacist", None)  # type: ignore[attr-defined]
        sign_in(client, "pharmacist")
        found = client.get("/determinations/old-approved").json()
        assert found["outcome"] == "approved" and found["questionnaire"] == QUESTIONNAIRE
        assert client.get("/ClaimResponse/old-approved").json()["id"] == "old-approved"
        stored = client.get("/QuestionnaireResponse/old-approved").json()
        assert stored["subject"] == {"reference": "Patient/old"}
        assert (
            "approved" in client.get("/determinations/old-approved/notice?format=text").text.lower()
        )


def check_store(store: Store) -> None:
    """Run on a store opened over ``write_old_database``."""
    assert store.migrated == (1, LATEST)
    assert [a.id for a in store.approvals("ref:Patient/old", "eocco329")] == ["old-approved"]
    assert store.approvals("ref:Patient/old", "mn-dhs-mekinist") == []
    old = store.get("old-approved")
    assert old is not None and old.member == "ref:Patient/old"
    new = Record(
        **{**old.__dict__, "id": "new", "response_key": "key-new", "member": "ref:Patient/new"}
    )
    store.save(new)
    assert [a.id for a in store.approvals("ref:Patient/new", "eocco329")] == ["new"]
    check_references_and_search(store)
    check_saved_together(store, old)
    for n, url in enumerate([QUESTIONNAIRE, "https://x.example/Questionnaire/q_1|1"]):
        store.log_error(
            ErrorReport(f"e{n}", f"2026-11-2{n}T00:00:00", "r", url, {"issue": [{"code": "x"}]})
        )
    assert [e.id for e in store.errors()] == ["e1", "e0"]
    assert [e.id for e in store.errors(QUESTIONNAIRE.split("|")[0])] == ["e0"]
    # a LIKE wildcard in a url matches only itself
    assert store.errors("https://x.example/Questionnaire/q%1") == []
    assert [e.id for e in store.errors("https://x.example/Questionnaire/q_1")] == ["e1"]


def check_saved_together(store: Store, like: Record) -> None:
    """Records saved in one transaction (the writer's group) are saved as
    one by one: a response sent twice among them is stored once, the second
    finding the first; one already stored is found; each new record gets
    its own reference."""

    def copy(rid: str, key: str) -> Record:
        return Record(**{**like.__dict__, "id": rid, "response_key": key, "reference": None})

    before = store.count()
    saved = store.save_all(
        [copy("g1", "key-g1"), copy("g2", "key-g1"), copy("g3", "key-new"), copy("g4", "key-g4")]
    )
    assert [(record.id, new) for record, new in saved] == [
        ("g1", True),
        ("g1", False),  # the same response twice in one group: the first
        ("new", False),  # stored before: found
        ("g4", True),
    ]
    assert store.count() == before + 2
    references = {record.id: record.reference for record, _ in saved}
    assert None not in references.values() and len(set(references.values())) == 3
    stored = store.get("g4")
    assert stored is not None and stored.reference == references["g4"]
    assert store.save_all([]) == []


def check_references_and_search(store: Store) -> None:
    """The old records got a short reference each when migrated, a new one
    when saved; the casework's search reads them, and the patient's name,
    in the store's own SQL."""
    from review.reference import normalize
    from service.casework import Casework, Search

    references = {}
    for rid in ("old-approved", "old-denied", "new"):
        record = store.get(rid)
        assert record is not None and record.reference is not None
        assert normalize(record.reference) == record.reference
        references[rid] = record.reference
    assert len(set(references.values())) == 3
    casework = Casework(store)
    found, total = casework.search(Search(reference=references["old-denied"]), "newest")
    assert [r.id for r in found] == ["old-denied"] and total == 1
    # the subject has no name: a name matches nothing, a LIKE wildcard only itself
    assert casework.search(Search(patient="%"), "newest") == ([], 0)
    page, total = casework.search(Search(limit=2, offset=1), "newest")
    assert total == 3 and len(page) == 2
