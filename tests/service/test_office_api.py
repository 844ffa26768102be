"""The office's drafts and history over HTTP (service/office.py): a draft
saved, listed, read, updated and deleted by its practice only; a body that
is not an in-progress QuestionnaireResponse refused; the practice's
submissions listed newest first with where each stands; 401 without
credentials, and the CSRF token required of a session."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.request import NPI_SYSTEM, PRIORITY_EXTENSION
from scoring.fill import fill
from tests.support.callers import add_user, authorize, sign_in
from tests.support.cases import base_answers, package_for
from tests.support.dtr_requests import FHIR


@pytest.fixture()
def app(app: Any) -> Any:
    """The shared service, with two practices' office users."""
    for name, role, organization in (
        ("ann", "office", "clinic-a"),
        ("ben", "office", "clinic-a"),
        ("cat", "office", "clinic-b"),
        ("pat", "pharmacist", None),
    ):
        add_user(app.state.store, name, role, organization)
    return app


class Office:
    """A signed-in person's browser: the session cookie and its CSRF token."""

    def __init__(self, app: Any, username: str) -> None:
        self.client = TestClient(app)
        self.csrf = sign_in(self.client, username)

    def post(self, path: str, body: Any, csrf: bool = True) -> Any:
        headers = {**FHIR, **({"X-CSRF-Token": self.csrf} if csrf else {})}
        content = body if isinstance(body, bytes | str) else json.dumps(body)
        return self.client.post(path, content=content, headers=headers)

    def get(self, path: str) -> Any:
        return self.client.get(path)

    def delete(self, path: str, csrf: bool = True) -> Any:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.client.delete(path, headers=headers)


def request_facts(response: dict[str, Any], member: str, name: str) -> dict[str, Any]:
    """The patient, prescriber and priority as the portal puts them."""
    response["subject"] = {
        "reference": f"Patient/{member}",
        "display": name,
        "identifier": {"value": member},
    }
    response["author"] = {
        "display": "Dr. Grace Hopper",
        "identifier": {"system": NPI_SYSTEM, "value": "1234567893"},
    }
    response["extension"] = [{"url": PRIORITY_EXTENSION, "valueCode": "standard"}]
    return response


def draft(catalog: Catalog, member: str = "M100", name: str = "Ada Lovelace", **kw: Any) -> Any:
    package = package_for(catalog, "eocco329", "initial")
    partial = fill(package, {"birth_date": "1968-04-12"}, status="in-progress", **kw)
    return request_facts(partial, member, name)


def completed(catalog: Catalog, member: str, name: str, rid: str) -> dict[str, Any]:
    package = package_for(catalog, "eocco329", "initial")
    answers = base_answers("eocco329", "initial_met")
    return request_facts(fill(package, answers, response_id=rid), member, name)


def test_a_draft_is_saved_listed_read_updated_and_deleted(app: Any, catalog: Catalog) -> None:
    ann = Office(app, "ann")
    created = ann.post("/drafts", draft(catalog))
    assert created.status_code == 201, created.text
    saved = created.json()
    draft_id = saved["id"]
    assert created.headers["location"].endswith(f"/drafts/{draft_id}")
    assert saved["patient"] == "Ada Lovelace" and saved["memberId"] == "M100"
    assert saved["label"].startswith("Ada Lovelace — EOCCO329")
    assert saved["link"] == f"/?draft={draft_id}"

    listed = ann.get("/drafts").json()["drafts"]
    assert [d["id"] for d in listed] == [draft_id]
    assert "response" not in listed[0]  # the list names drafts, the answers are read one by one
    read = ann.get(f"/drafts/{draft_id}").json()
    assert read["response"]["id"] == draft_id
    assert read["response"]["status"] == "in-progress"
    assert read["response"]["subject"]["display"] == "Ada Lovelace"

    # saved again under its id: the same draft, updated
    again = draft(catalog, name="Ada King")
    again["id"] = draft_id
    updated = ann.post("/drafts", again)
    assert updated.status_code == 200, updated.text
    assert updated.json()["created"] == saved["created"]
    assert [d["patient"] for d in ann.get("/drafts").json()["drafts"]] == ["Ada King"]

    # everyone in the practice takes it up
    ben = Office(app, "ben")
    assert ben.get(f"/drafts/{draft_id}").json()["patient"] == "Ada King"

    assert ann.delete(f"/drafts/{draft_id}").status_code == 204
    assert ann.get(f"/drafts/{draft_id}").status_code == 404
    assert ann.get("/drafts").json()["drafts"] == []
    assert ann.delete(f"/drafts/{draft_id}").status_code == 404


def test_a_draft_given_its_own_id_keeps_it(app: Any, catalog: Catalog) -> None:
    ann = Office(app, "ann")
    created = ann.post("/drafts", draft(catalog, response_id="form-session-1"))
    assert created.status_code == 201
    assert created.json()["id"] == "form-session-1"


def test_another_practices_draft_is_unknown(app: Any, catalog: Catalog) -> None:
    ann, cat = Office(app, "ann"), Office(app, "cat")
    draft_id = ann.post("/drafts", draft(catalog)).json()["id"]
    assert cat.get(f"/drafts/{draft_id}").status_code == 404
    assert cat.delete(f"/drafts/{draft_id}").status_code == 404
    assert cat.get("/drafts").json()["drafts"] == []
    # saved under another practice's draft id: a draft of its own, under a new id
    copy = draft(catalog, name="Mallory")
    copy["id"] = draft_id
    made = cat.post("/drafts", copy)
    assert made.status_code == 201
    assert made.json()["id"] != draft_id
    assert ann.get(f"/drafts/{draft_id}").json()["patient"] == "Ada Lovelace"
    assert [d["patient"] for d in cat.get("/drafts").json()["drafts"]] == ["Mallory"]
    # reads of a draft are audited with the member
    trail = app.state.store.audit_trail("ref:Patient/M100")
    assert any(e.what == f"drafts/{draft_id}" for e in trail)


def test_bodies_that_are_not_in_progress_responses_are_refused(app: Any, catalog: Catalog) -> None:
    ann = Office(app, "ann")
    completed_one = draft(catalog)
    completed_one["status"] = "completed"
    unknown_form = draft(catalog)
    unknown_form["questionnaire"] = "https://example.org/Questionnaire/nothing|1"
    bad_id = draft(catalog)
    bad_id["id"] = "no spaces/allowed"
    newline_id = draft(catalog)
    newline_id["id"] = "draft-1\n"
    bad_priority = draft(catalog)
    bad_priority["extension"] = [{"url": PRIORITY_EXTENSION, "valueCode": "urgent"}]
    bad_item = draft(catalog)
    bad_item["item"] = {"linkId": "I"}
    for body in (
        b"{not json",
        b"[]",
        {"resourceType": "Patient", "id": "p1"},
        completed_one,
        unknown_form,
        bad_id,
        newline_id,
        bad_priority,
        bad_item,
    ):
        reply = ann.post("/drafts", body)
        assert reply.status_code == 400, (body, reply.text)
        outcome = reply.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
    wrong_type = ann.client.post(
        "/drafts",
        content=json.dumps(draft(catalog)),
        headers={"content-type": "text/plain", "X-CSRF-Token": ann.csrf},
    )
    assert wrong_type.status_code == 415
    assert ann.get("/drafts").json()["drafts"] == []


def test_drafts_need_credentials_and_the_csrf_token(app: Any, catalog: Catalog) -> None:
    anonymous = TestClient(app)
    for method, path in (
        ("POST", "/drafts"),
        ("GET", "/drafts"),
        ("GET", "/drafts/any"),
        ("DELETE", "/drafts/any"),
        ("GET", "/submissions"),
    ):
        reply = anonymous.request(method, path, content=b"{}", headers=FHIR)
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.json()["issue"][0]["code"] == "login"
    ann = Office(app, "ann")
    refused = ann.post("/drafts", draft(catalog), csrf=False)
    assert refused.status_code == 403 and "CSRF" in refused.text
    draft_id = ann.post("/drafts", draft(catalog)).json()["id"]
    assert ann.delete(f"/drafts/{draft_id}", csrf=False).status_code == 403
    assert ann.get(f"/drafts/{draft_id}").status_code == 200
    # a pharmacist reads requests; drafts are an office's
    pat = Office(app, "pat")
    assert pat.post("/drafts", draft(catalog)).status_code == 403
    assert pat.get(f"/drafts/{draft_id}").status_code == 404


def test_submissions_are_the_practices_own_newest_first(app: Any, catalog: Catalog) -> None:
    ann, ben, cat = Office(app, "ann"), Office(app, "ben"), Office(app, "cat")
    first = ann.post(
        "/QuestionnaireResponse/$evaluate", completed(catalog, "M1", "Ada Lovelace", "qr-a")
    )
    assert first.status_code == 201, first.text
    time.sleep(1.1)  # records are received to the second: the next one is newer
    partial = draft(catalog, member="M2", name="Charles Babbage")
    partial["status"] = "completed"
    partial["id"] = "qr-b"
    second = ben.post("/QuestionnaireResponse/$evaluate", partial)
    assert second.status_code == 201, second.text
    theirs = cat.post(
        "/QuestionnaireResponse/$evaluate", completed(catalog, "M3", "Mallory", "qr-c")
    )
    assert theirs.status_code == 201
    # the same response again: the same record, not a second one
    again = ann.post(
        "/QuestionnaireResponse/$evaluate", completed(catalog, "M1", "Ada Lovelace", "qr-a")
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]

    listed = ann.get("/submissions").json()["submissions"]
    assert [s["id"] for s in listed] == [second.json()["id"], first.json()["id"]]
    assert listed[0]["received"] > listed[1]["received"]
    pended, approved = listed
    assert pended["patient"] == "Charles Babbage" and pended["memberId"] == "M2"
    assert pended["outcome"] == "pended" and pended["pendReason"] == "missing-information"
    assert pended["missingQuestions"] and pended["state"] == "automatic"
    assert approved["outcome"] == "approved" and approved["pendReason"] is None
    assert approved["authorization"]["end"] and approved["quantity"]["approved"]
    assert approved["title"].startswith("EOCCO329")
    assert approved["questionnaire"].startswith("https://pa-dtr.example.org/fhir/Questionnaire/")
    rid = approved["id"]
    assert approved["determination"].endswith(f"/determinations/{rid}")
    assert approved["notice"].endswith(f"/determinations/{rid}/notice")
    assert approved["claimResponse"].endswith(f"/ClaimResponse/{rid}")
    assert ann.get(f"/determinations/{rid}/notice").status_code == 200
    assert [s["patient"] for s in cat.get("/submissions").json()["submissions"]] == ["Mallory"]
    # the payer's pharmacist sees every practice's
    pat = Office(app, "pat")
    assert len(pat.get("/submissions").json()["submissions"]) == 3
    # listing shows members' data: audited
    assert any(e.what == "submissions" for e in app.state.store.audit_trail("ref:Patient/M2"))


def test_a_backend_client_keeps_drafts_of_its_own(app: Any, catalog: Catalog) -> None:
    client = authorize(TestClient(app), "ehr-a")
    made = client.post("/drafts", content=json.dumps(draft(catalog)), headers=FHIR)
    assert made.status_code == 201, made.text
    draft_id = made.json()["id"]
    assert client.get(f"/drafts/{draft_id}").status_code == 200
    # a DTR client's scopes create and read; updating is another scope
    again = draft(catalog)
    again["id"] = draft_id
    refused = client.post("/drafts", content=json.dumps(again), headers=FHIR)
    assert refused.status_code == 403, refused.text
    assert Office(app, "ann").get(f"/drafts/{draft_id}").status_code == 404
