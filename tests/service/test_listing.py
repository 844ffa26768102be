"""Search, filters and paging of the lists people work from
(service/listing.py) over HTTP: an office's history (``GET /submissions``,
the case table tests/cases/listing.yaml), the pharmacist's queue, decided
cases and own pends; the short reference number (review/reference.py) on
each, searchable, a typo refused by its check character; a pend that a
later request completed marked as such."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.reference import ALPHABET, normalize
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.service.test_office_api import completed, draft, request_facts
from tests.support.callers import add_user, sign_in
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.dtr_requests import FHIR

REFERENCE = re.compile(f"[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}")


class Person:
    """A signed-in person's browser session."""

    def __init__(self, app: Any, username: str) -> None:
        self.client = TestClient(app)
        self.csrf = sign_in(self.client, username)

    def submit(self, response: dict[str, Any]) -> str:
        sent = self.client.post(
            "/QuestionnaireResponse/$evaluate",
            content=json.dumps(response),
            headers={**FHIR, "X-CSRF-Token": self.csrf},
        )
        assert sent.status_code == 201, sent.text
        return str(sent.json()["id"])

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params) if params else self.client.get(path)


def over_limit(catalog: Catalog, member: str, name: str, rid: str) -> dict[str, Any]:
    """A request meeting every criterion but the quantity: a pharmacist decides."""
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": 90}
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    return request_facts(response, member, name)


@pytest.fixture(scope="module")
def history(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One service whose store holds the history the case table describes."""
    path: Path = tmp_path_factory.mktemp("listing") / "store.sqlite3"
    app = create_app(Settings(database=str(path)), catalog=catalog, clock=lambda: AS_OF)
    for name, role, organization in (
        ("ann", "office", "clinic-a"),
        ("cat", "office", "clinic-b"),
        ("pat", "pharmacist", None),
        ("pia", "pharmacist", None),
    ):
        add_user(app.state.store, name, role, organization)
    ann, cat = Person(app, "ann"), Person(app, "cat")
    ids = {
        "M1": ann.submit(completed(catalog, "M1", "Ada Lovelace", "qr-1")),
        "M2": ann.submit(draft(catalog, member="M2", name="Charles Babbage") | _done("qr-2")),
        "M3": ann.submit(over_limit(catalog, "M3", "Ada King", "qr-3")),
        "M9": cat.submit(completed(catalog, "M9", "Mallory", "qr-9")),
    }
    references = {member: app.state.store.get(rid).reference for member, rid in ids.items()}
    return {"app": app, "ann": ann, "ids": ids, "references": references}


def _done(rid: str) -> dict[str, Any]:
    return {"status": "completed", "id": rid}


def _shown(reference: str) -> str:
    return f"{reference[:5]}-{reference[5:]}"


def _typo(reference: str) -> str:
    """The reference with its first character changed to another."""
    other = ALPHABET[(ALPHABET.index(reference[0]) + 1) % len(ALPHABET)]
    return other + reference[1:]


def _query(query: dict[str, str], references: dict[str, str]) -> dict[str, str]:
    today = datetime.now(UTC).date()
    days = {
        "{today}": today,
        "{yesterday}": today - timedelta(1),
        "{tomorrow}": today + timedelta(1),
    }
    out = {}
    for key, value in query.items():
        if value in days:
            value = days[value].isoformat()
        elif found := re.fullmatch(r"\{reference:(\w+)(?:\|(\w+))?\}", value):
            reference = references[found.group(1)]
            value = {
                None: _shown(reference),
                "typed": reference.lower(),
                "typo": _shown(_typo(reference)),
            }[found.group(2)]
        out[key] = value
    return out


@pytest.mark.cases("listing.yaml")
def test_the_office_history_is_searched_as_the_table_says(
    history: dict[str, Any], case: dict[str, Any]
) -> None:
    got = history["ann"].get("/submissions", **_query(case["query"], history["references"]))
    if "status" in case:
        assert got.status_code == case["status"], got.text
        assert case["message"] in got.text, got.text
        assert got.headers["content-type"].startswith("application/fhir+json")
        return
    assert got.status_code == 200, got.text
    body = got.json()
    if "patients" in case:
        assert sorted(s["patient"] for s in body["submissions"]) == sorted(case["patients"])
        assert body["total"] == len(case["patients"])
    else:
        assert len(body["submissions"]) == case["count"] and body["total"] == case["total"]


def test_pages_read_the_whole_list_once_in_a_stable_order(history: dict[str, Any]) -> None:
    ann = history["ann"]
    whole = [s["id"] for s in ann.get("/submissions").json()["submissions"]]
    assert ann.get("/submissions").json()["submissions"][0]["id"] == whole[0]  # read again: same
    seen, link = [], "/submissions?patient=&limit=1"
    while link:
        page = ann.get(link).json()
        assert page["total"] == 3 and page["limit"] == 1
        seen += [s["id"] for s in page["submissions"]]
        link = page["next"]
    assert seen == whole and len(set(seen)) == 3
    last = ann.get("/submissions", limit=1, offset=2).json()
    assert last["next"] is None and last["previous"].endswith("limit=1&offset=1")
    assert (last["first"], last["last"]) == (3, 3)
    # a filter is kept in the links to the other pages
    first = ann.get("/submissions", patient="ada", limit=1).json()
    assert first["total"] == 2 and "patient=ada" in first["next"]


def test_each_record_has_a_short_reference_beside_its_id(history: dict[str, Any]) -> None:
    ann, ids = history["ann"], history["ids"]
    listed = {s["id"]: s for s in ann.get("/submissions").json()["submissions"]}
    references = {s["reference"] for s in listed.values()}
    assert len(references) == 3
    for entry in listed.values():
        assert REFERENCE.fullmatch(entry["reference"]), entry["reference"]
        plain = entry["reference"].replace("-", "")
        assert normalize(plain) == plain
        # every single mistyped character is caught by the check character
        for place in range(len(plain)):
            for other in ALPHABET:
                if other != plain[place]:
                    assert normalize(plain[:place] + other + plain[place + 1 :]) is None
    # the determination (the portal's result), the notice and the case show it
    rid = ids["M1"]
    shown = listed[rid]["reference"]
    assert ann.get(f"/determinations/{rid}").json()["reference"] == shown
    notice = ann.get(f"/determinations/{rid}/notice").text
    assert shown in notice and rid in notice
    # Crockford's readings of look-alikes: O is 0, I and L are 1
    plain = listed[ids["M1"]]["reference"].replace("-", "")
    looks = plain.replace("0", "o").replace("1", "l")
    assert normalize(f" {looks[:5]} {looks[5:]} ") == plain


def test_the_pharmacists_lists_are_searched_and_paged(history: dict[str, Any]) -> None:
    app, ids, references = history["app"], history["ids"], history["references"]
    pat, pia = Person(app, "pat"), Person(app, "pia")
    queue = pat.get("/review/queue").json()
    assert [c["id"] for c in queue["cases"]] == [ids["M3"]] and queue["total"] == 1
    assert queue["cases"][0]["reference"] == _shown(references["M3"])
    assert pat.get("/review/queue", member="m3").json()["total"] == 1
    assert pat.get("/review/queue", patient="lovelace").json()["cases"] == []
    assert pat.get("/review/queue", reference=references["M3"]).json()["total"] == 1
    assert pat.get("/review/queue", reference=_typo(references["M3"])).status_code == 400
    # the payer's history is every office's
    assert pat.get("/submissions").json()["total"] == 4
    assert pat.get("/submissions", member="M9").json()["submissions"][0]["patient"] == "Mallory"

    pended = pat.client.post(
        f"/review/cases/{ids['M3']}/decision",
        content=json.dumps(
            {"action": "pend", "request": "the chart note of the dose", "rationale": "dose"}
        ),
        headers={**FHIR, "X-CSRF-Token": pat.csrf},
    )
    assert pended.status_code == 200, pended.text
    assert pat.get("/review/queue").json()["total"] == 0
    decided = pat.get("/review/decided").json()
    assert [c["id"] for c in decided["cases"]] == [ids["M3"]]
    assert decided["cases"][0]["reviewerName"] == "Pat"
    assert pat.get("/review/decided", status="approved").json()["total"] == 0
    # my pends: the signed-in pharmacist's own
    assert [c["id"] for c in pat.get("/review/pends").json()["cases"]] == [ids["M3"]]
    assert pia.get("/review/pends").json()["cases"] == []
    # an office reads none of these lists
    assert history["ann"].get("/review/decided").status_code == 403


def test_a_pend_a_later_request_completed_is_marked(catalog: Catalog, tmp_path: Path) -> None:
    app = create_app(Settings(database=str(tmp_path / "s.sqlite3")), catalog=catalog)
    add_user(app.state.store, "ann", "office", "clinic-a")
    ann = Person(app, "ann")
    first = ann.submit(draft(catalog, member="M2", name="Charles Babbage") | _done("qr-2"))
    other = ann.submit(draft(catalog, member="M4", name="Mary Somerville") | _done("qr-4"))
    time.sleep(1.1)  # received to the second: the completion is later
    again = ann.submit(completed(catalog, "M2", "Charles Babbage", "qr-2b"))
    listed = {s["id"]: s for s in ann.get("/submissions").json()["submissions"]}
    assert listed[first]["supersededBy"] == again
    assert listed[other]["supersededBy"] is None  # still waiting for its answers
    assert listed[again]["supersededBy"] is None
