"""An office's reply to a pended request joins the same record, through
``$evaluate`` with the pended request as ``context`` (service/replies.py):
the answers versioned, the documents and the note kept, a trail entry, back
in the pharmacist's queue (or scored again when the scorer pended it), the
deadline run again from the reply's receipt, one request in the metrics.
A bad reply is refused with an OperationOutcome and changes nothing."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.config import load_payers
from review.request import NPI_SYSTEM
from scoring.fill import fill
from service.migrations import LATEST
from service.store import SQLiteStore
from tests.support.callers import People, add_user, sign_in
from tests.support.cases import base_answers, package_for
from tests.support.paths import PAYER_SETTINGS

EOCCO = load_payers(PAYER_SETTINGS)["EOCCO"]
CONSULT = b"%PDF-1.4\n% the oncology consult note\n"
ASKED = "The oncology consult note."
# the trail's entries of what was done to a request (not who read it)
DONE = {"submitted", "replied", "approve", "approve-in-full", "deny", "pend"}


def response(catalog: Catalog, rid: str, quantity: int = 90, **change: Any) -> dict[str, Any]:
    """An EOCCO329 initial request meeting every criterion but (above 66)
    the quantity; ``change`` sets or (None) leaves out answers."""
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": quantity}
    for key, value in change.items():
        if value is None:
            answers.pop(key)
        else:
            answers[key] = value
    out = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    out["subject"] = {
        "reference": "Patient/EX123456", "display": "Jane Example", "identifier": {"value": "EX123456"},
    }  # fmt: skip
    out["author"] = {
        "display": "Dr. Sam Sample", "identifier": {"system": NPI_SYSTEM, "value": "1234567893"},
    }  # fmt: skip
    return out


def pdf(data: bytes = CONSULT, title: str = "consult.pdf") -> dict[str, Any]:
    return {"contentType": "application/pdf", "title": title,
            "data": base64.b64encode(data).decode()}  # fmt: skip


def reply_body(
    resource: dict[str, Any], context: str, note: str | None = None, *documents: dict[str, Any]
) -> dict[str, Any]:
    parameter: list[dict[str, Any]] = [
        {"name": "response", "resource": resource},
        {"name": "context", "valueString": context},
    ]
    if note is not None:
        parameter.append({"name": "note", "valueString": note})
    parameter += [{"name": "document", "valueAttachment": d} for d in documents]
    return {"resourceType": "Parameters", "parameter": parameter}


def send(client: TestClient, csrf: str, body: dict[str, Any]) -> Any:
    return client.post(
        "/QuestionnaireResponse/$evaluate",
        content=json.dumps(body),
        headers={"content-type": "application/fhir+json", "X-CSRF-Token": csrf},
    )


def pended_by_pharmacist(people: People, catalog: Catalog, rid: str = "pend-me") -> str:
    record = people.submit(response(catalog, rid)).json()["id"]
    asked = people.decide(record, action="pend", rationale="Need the chart.", request=ASKED)
    assert asked.status_code == 200, asked.text
    return str(record)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_reply_to_a_pharmacists_pend_joins_the_same_case(
    people: People, catalog: Catalog
) -> None:
    record = pended_by_pharmacist(people, catalog)
    [received] = [s["received"] for s in people.office.get("/submissions").json()["submissions"]]
    # the pend's notice says where to reply: the portal's reply view of the same case
    asking = people.office.get(f"/determinations/{record}/notice?format=text").text
    assert re.search(
        rf"Send it as a reply to this request, on the same case: \S+/\?context={record}\n", asking
    )
    assert people.pharmacist.get("/review/queue").json()["total"] == 0

    # the office answers: the consult note, a note, and a changed answer
    changed = response(catalog, "pend-me", quantity=66)
    sent = send(
        people.office, people.office_csrf,
        reply_body(changed, record, "Consult note attached; dose lowered to 66.", pdf()),
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert sent.json()["id"] == record  # the same record, no new one
    assert sent.headers["location"].endswith(f"/ClaimResponse/{record}")

    # back in the pharmacist's queue, pended for review, with the new answers
    queue = people.pharmacist.get("/review/queue").json()
    assert [c["id"] for c in queue["cases"]] == [record]
    now = people.office.get(f"/determinations/{record}").json()
    assert (now["outcome"], now["review"]["state"]) == ("pended", "awaiting-review")
    assert now["reply"]["answers"] == ASKED

    case = people.pharmacist.get(f"/review/cases/{record}").json()
    assert case["state"] == "awaiting-review"
    assert case["recommended"] == "approved"  # 66 is within the limit: the scorer's view
    assert any(a["answer"] == "66" for a in case["answers"])
    # the earlier answers are kept for the trail
    [reply] = case["replies"]
    assert (reply["asked"], reply["note"], reply["documents"]) == (
        ASKED, "Consult note attached; dose lowered to 66.", 1,
    )  # fmt: skip
    assert (reply["outcomeBefore"], reply["outcomeAfter"]) == ("pended", "pended")
    steps = [t["what"] for t in case["trail"]]
    assert steps[0] == "submitted"
    entry = next(s for s in steps if s.startswith("replied"))
    assert f"answers “{ASKED}”" in entry and "the answers before it are kept" in entry
    assert steps.index(entry) > next(i for i, s in enumerate(steps) if s.startswith("pend:"))

    # the document the reply sent opens from the case, as the answers' do
    [sent_doc] = [a for a in case["attachments"] if a["question"].startswith("Sent with the reply")]
    # when, as the page's other times read (not the stored ISO instant): in Oregon's time
    assert re.fullmatch(
        r"Sent with the reply of \w+ \d{1,2}, \d{4}, \d\d:\d\d P[SD]T", sent_doc["question"]
    )
    opened = people.pharmacist.get(sent_doc["href"])
    assert opened.status_code == 200 and opened.content == CONSULT
    assert opened.headers["content-type"] == "application/pdf"

    # the deadline runs from the reply's receipt, by the payer's rule and its citation
    deadline = case["deadline"]
    rule = EOCCO.deadlines.standard
    assert (deadline["from"], deadline["start"]) == ("reply", reply["at"])
    assert instant(deadline["due"]) == instant(reply["at"]).replace(
        second=0, microsecond=0
    ) + timedelta(hours=rule.hours)
    assert deadline["citation"] == rule.citation
    # the first receipt is kept
    assert case["received"] == received < reply["at"]

    # the notice says what it answers
    notice = people.office.get(f"/determinations/{record}/notice?format=text").text
    assert "answers your reply" in notice and ASKED in notice

    # the pharmacist decides the same case
    decided = people.decide(record, action="approve", rationale="Consult note read.")
    assert decided.status_code == 200, decided.text
    assert people.office.get(f"/determinations/{record}").json()["outcome"] == "approved"

    # one request in the metrics, timed from its first receipt
    period = case["received"][:7]
    metrics = people.pharmacist.get("/metrics", params={"period": period}).json()
    assert metrics["all"]["received"] == 1
    assert metrics["all"]["standard"]["decided"] == 1


def test_a_replied_case_waits_in_the_queue_from_its_reply(people: People, catalog: Catalog) -> None:
    """The decision clock runs again from the reply: in the queue the case
    is as old as the reply, behind a request received before the reply
    but after the case's first receipt."""
    first = pended_by_pharmacist(people, catalog, "first")
    time.sleep(1.01)  # receipts are kept to the second: the next one is later
    second = people.submit(response(catalog, "second")).json()["id"]
    assert [c["id"] for c in people.pharmacist.get("/review/queue").json()["cases"]] == [second]

    sent = send(people.office, people.office_csrf,
                reply_body(response(catalog, "first", quantity=66), first, "The consult note."))  # fmt: skip
    assert sent.status_code == 200, sent.text
    cases = people.pharmacist.get("/review/queue").json()["cases"]
    assert [c["id"] for c in cases] == [second, first]
    replied = cases[1]
    assert replied["received"] < cases[0]["received"] < replied["replied"]
    assert (replied["deadline"]["from"], replied["deadline"]["start"]) == (
        "reply", replied["replied"],
    )  # fmt: skip
    assert cases[0]["replied"] is None and cases[0]["deadline"]["from"] == "receipt"
    # the page lists it in the same order, with the reply's time
    page = people.pharmacist.get("/review").text
    assert page.index(f"/review/{second}") < page.index(f"/review/{first}")
    assert page.count('class="replied"') == 1


def test_a_reply_correcting_the_member_id_is_found_by_the_new_one(
    people: People, catalog: Catalog
) -> None:
    """The office corrects the patient's name and member id in its reply:
    the queue and the office's history find the case by them, no longer by
    the old ones."""
    record = pended_by_pharmacist(people, catalog)
    corrected = response(catalog, "pend-me", quantity=66)
    corrected["subject"] = {**corrected["subject"], "display": "Janet Example-Smith",
                            "identifier": {"value": "EX654321"}}  # fmt: skip
    sent = send(people.office, people.office_csrf, reply_body(corrected, record, "ID corrected."))
    assert sent.status_code == 200, sent.text

    def found(who: TestClient, path: str, **search: str) -> list[str]:
        listing = who.get(path, params=search)
        assert listing.status_code == 200, listing.text
        key = "cases" if path.startswith("/review") else "submissions"
        return [c["id"] for c in listing.json()[key]]

    for who, path in ((people.pharmacist, "/review/queue"), (people.office, "/submissions")):
        assert found(who, path, member="EX654321") == [record]
        assert found(who, path, member="ex654321") == [record]  # typed in any case
        assert found(who, path, patient="example-smith") == [record]
        assert found(who, path, member="EX123456") == []
        assert found(who, path, patient="Jane Example") == []
    [case] = people.pharmacist.get("/review/queue", params={"member": "EX654321"}).json()["cases"]
    assert case["member"] == {"name": "Janet Example-Smith", "id": "EX654321"}


def test_a_store_of_release_10_learns_when_its_cases_were_replied_to(
    people: People, catalog: Catalog, tmp_path: Path, app: Any
) -> None:
    """Migration 11 sets each record's last reply from the replies kept."""
    record = pended_by_pharmacist(people, catalog)
    body = reply_body(response(catalog, "pend-me", quantity=66), record, "The consult note.")
    assert send(people.office, people.office_csrf, body).status_code == 200
    [replied] = people.pharmacist.get(f"/review/cases/{record}").json()["replies"]
    app.state.store.close()
    path = tmp_path / "store.sqlite3"
    with closing(sqlite3.connect(path)) as db:  # the database as release 10 left it
        db.execute("ALTER TABLE determinations DROP COLUMN replied_at")
        # and what the later migrations added (12, 13: an impact report's progress;
        # 14: CDS clients, coverage assertions; 15: impact reports kept)
        db.execute("DROP TABLE impact_rows")
        db.execute("DROP TABLE impact_runs")
        db.execute("DROP TABLE impact_parts")
        db.execute("DROP TABLE impact_reports")
        for column in ("cds_hooks", "cds_jku", "cds_fetch"):
            db.execute(f"ALTER TABLE clients DROP COLUMN {column}")
        db.execute("DROP TABLE coverage_assertions")
        db.execute("DELETE FROM schema_version WHERE version > 10")
        db.commit()
    store = SQLiteStore(path)
    assert store.migrated == (10, LATEST)
    migrated = store.get(record)
    assert migrated is not None and migrated.replied_at == replied["at"]
    store.close()


def test_a_reply_to_the_scorers_pend_is_scored_again(people: People, catalog: Catalog) -> None:
    first = people.submit(response(catalog, "incomplete", quantity=66, kras_mutation=None))
    record = first.json()["id"]
    pended = people.office.get(f"/determinations/{record}").json()
    assert (pended["outcome"], pended["pendReason"]) == ("pended", "missing-information")

    complete = response(catalog, "incomplete", quantity=66)
    sent = send(people.office, people.office_csrf, reply_body(complete, record))
    assert sent.status_code == 200, sent.text
    assert sent.json()["id"] == record and sent.json()["outcome"] == "complete"
    now = people.office.get(f"/determinations/{record}").json()
    assert now["outcome"] == "approved"
    assert people.pharmacist.get("/review/queue").json()["total"] == 0
    # a reply to it now: decided
    again = send(people.office, people.office_csrf, reply_body(complete, record))
    assert again.status_code == 409
    # the history lists one request
    assert [s["id"] for s in people.office.get("/submissions").json()["submissions"]] == [record]


def test_a_note_or_document_without_a_context_is_refused(people: People, catalog: Catalog) -> None:
    body = reply_body(response(catalog, "x"), "unused", "a note")
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "context"]
    refused = send(people.office, people.office_csrf, body)
    assert refused.status_code == 400
    assert "give its id as 'context'" in refused.text
    assert people.office.get("/submissions").json()["submissions"] == []


@pytest.mark.cases("bad_replies.yaml")
def test_a_bad_reply_is_refused_and_changes_nothing(
    people: People, catalog: Catalog, case: dict[str, Any]
) -> None:
    target = case["to"]
    if target == "pended":
        record = pended_by_pharmacist(people, catalog)
    elif target == "decided":
        record = people.submit(response(catalog, "within", quantity=66)).json()["id"]
    elif target == "with a pharmacist":
        record = people.submit(response(catalog, "waiting")).json()["id"]
    else:
        record = "0" * 32
    client, csrf = people.office, people.office_csrf
    if case.get("by") == "another office":
        add_user(people.office.app.state.store, "bob", "office", "clinic-b")  # type: ignore[attr-defined]
        client = TestClient(people.office.app)
        csrf = sign_in(client, "bob")
    resource = response(catalog, "reply", quantity=66)
    if "member" in case:
        resource["subject"] = {"reference": f"Patient/{case['member']}",
                               "identifier": {"value": case["member"]}}  # fmt: skip
    documents = []
    if "document" in case:
        spec = case["document"]
        data = base64.b64encode(b"x" * spec["size"]).decode()
        documents.append({"contentType": spec["contentType"], "title": spec["title"], "data": data})
        if spec["contentType"] is None:
            del documents[0]["contentType"]

    def queue() -> Any:
        # the time left runs on between two reads: what it is counted from is compared
        listed = people.pharmacist.get("/review/queue").json()
        for entry in listed.get("cases", []):
            entry.pop("secondsLeft", None)
            if isinstance(entry.get("deadline"), dict):
                entry["deadline"].pop("secondsLeft", None)
        return listed

    def state() -> Any:
        if target == "unknown":
            return queue()
        case_now = people.pharmacist.get(f"/review/cases/{record}").json()
        return (
            people.office.get(f"/determinations/{record}").json(),
            queue(),
            case_now["replies"],
            # what was done to it (the reads this check makes left out)
            [t["what"] for t in case_now["trail"] if t["what"].split(":")[0] in DONE],
        )

    before = state()
    refused = send(client, csrf, reply_body(resource, record, "here it is", *documents))
    assert refused.status_code == case["status"], refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert case["says"] in outcome["issue"][0]["diagnostics"]
    assert state() == before
