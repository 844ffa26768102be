"""Checks every store (SQLite, PostgreSQL) must pass: a database written
before the member column existed gains it, filled from its records; the
approvals of a member are found by policy; error reports are kept and listed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from service.store import ErrorReport, Record, Store

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


def old_row(rid: str, subject: str, outcome: str) -> tuple[Any, ...]:
    response = {"resourceType": "QuestionnaireResponse", "subject": {"reference": subject}}
    return (
        rid, f"key-{rid}", None, "r", "2026-11-01T00:00:00+00:00", QUESTIONNAIRE, "eocco329",
        "1.1.0", "2026-11-01", outcome, json.dumps(response), "{}", "{}",
    )  # fmt: skip


def write_old_database(execute: Callable[[str, tuple[Any, ...]], None], mark: str) -> None:
    """Two records of the previous release: an approval of Patient/old, a denial."""
    execute(OLD_SCHEMA, ())
    insert = f"INSERT INTO determinations VALUES ({', '.join([mark] * 13)})"
    execute(insert, old_row("old-approved", "Patient/old", "approved"))
    execute(insert, old_row("old-denied", "Patient/old", "denied"))


def check_store(store: Store) -> None:
    """Run on a store opened over ``write_old_database``."""
    assert [a.id for a in store.approvals("ref:Patient/old", "eocco329")] == ["old-approved"]
    assert store.approvals("ref:Patient/old", "mn-dhs-mekinist") == []
    old = store.get("old-approved")
    assert old is not None and old.member == "ref:Patient/old"
    new = Record(
        **{**old.__dict__, "id": "new", "response_key": "key-new", "member": "ref:Patient/new"}
    )
    store.save(new)
    assert [a.id for a in store.approvals("ref:Patient/new", "eocco329")] == ["new"]
    for n, url in enumerate([QUESTIONNAIRE, "https://x.example/Questionnaire/q_1|1"]):
        store.log_error(
            ErrorReport(f"e{n}", f"2026-11-2{n}T00:00:00", "r", url, {"issue": [{"code": "x"}]})
        )
    assert [e.id for e in store.errors()] == ["e1", "e0"]
    assert [e.id for e in store.errors(QUESTIONNAIRE.split("|")[0])] == ["e0"]
    # a LIKE wildcard in a url matches only itself
    assert store.errors("https://x.example/Questionnaire/q%1") == []
    assert [e.id for e in store.errors("https://x.example/Questionnaire/q_1")] == ["e1"]
