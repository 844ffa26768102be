"""Pharmacist review, end to end through the API: a denial the scorer
recommends is pended for review, reaches the queue, is decided by a
pharmacist, and the ClaimResponse, the determination and the notice follow
the decision; every step is in the trail."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.config import load_payers
from review.request import NPI_SYSTEM, PRIORITY_EXTENSION
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import People
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.dtr_requests import FHIR
from tests.support.paths import PAYER_SETTINGS

PAYERS = load_payers(PAYER_SETTINGS)


def request(catalog: Catalog, quantity: int, rid: str, expedited: bool = False) -> dict[str, Any]:
    """An EOCCO329 initial request meeting every criterion but the quantity."""
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": quantity}
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {
        "reference": "Patient/EX123456", "display": "Jane Example", "identifier": {"value": "EX123456"},
    }  # fmt: skip
    response["author"] = {
        "display": "Dr. Sam Sample", "identifier": {"system": NPI_SYSTEM, "value": "1234567893"},
    }  # fmt: skip
    if expedited:
        response.setdefault("extension", []).append(
            {"url": PRIORITY_EXTENSION, "valueCode": "expedited"}
        )
    return response


def test_a_recommended_denial_is_decided_by_a_pharmacist(people: People, catalog: Catalog) -> None:
    created = people.submit(request(catalog, 90, "over-limit"))
    assert created.status_code == 201, created.text
    claim = created.json()
    rid = claim["id"]
    # $evaluate and the ClaimResponse say a pharmacist decides; nothing is final
    assert claim["outcome"] == "queued"
    assert claim["disposition"] == "Pended: referred to a pharmacist for review"
    pending = people.office.get(f"/determinations/{rid}").json()
    assert (pending["outcome"], pending["pendReason"]) == ("pended", "review")
    assert pending["review"] == {"state": "awaiting-review"}  # not what the scorer thought
    assert "pharmacist" in people.office.get(f"/determinations/{rid}/notice?format=text").text

    # the queue: the pharmacist's, not the office's
    assert people.office.get("/review/queue").status_code == 403
    expedited = people.submit(request(catalog, 91, "urgent", expedited=True)).json()["id"]
    queue = people.pharmacist.get("/review/queue").json()
    assert [c["id"] for c in queue["cases"]] == [expedited, rid]  # expedited first
    first = queue["cases"][1]
    assert first["recommended"] == "denied" and first["member"]["name"] == "Jane Example"
    assert first["deadline"]["hours"] == 24 and "1396r-8" in first["deadline"]["citation"]

    # the case: each criterion's status with the policy text, the answers
    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    status = {c["section"]: c["status"] for c in case["criteria"]}
    assert status["QL"] == "not met" and status["I.A"] == "met"
    assert any(a["answer"] == "90" for a in case["answers"])
    assert case["recommendation"]["sections"]["unmet"] == ["QL"]

    # an office cannot decide; a rationale is required; a denial needs its sections
    office_try = people.office.post(
        f"/review/cases/{rid}/decision", content=json.dumps({"action": "deny"}),
        headers={**FHIR, "X-CSRF-Token": people.office_csrf},
    )  # fmt: skip
    assert office_try.status_code == 403
    assert people.decide(rid, action="deny", reasons=["QL"], rationale=" ").status_code == 400
    assert people.decide(rid, action="deny", reasons=[], rationale="over").status_code == 400
    decided = people.decide(
        rid, action="deny", reasons=["QL"], rationale="90 a month is above the labeled dose."
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["outcome"] == "denied" and decided.json()["state"] == "reviewed"
    again = people.decide(rid, action="approve", rationale="changed my mind")
    assert again.status_code == 409

    # the office sees the decision: determination, ClaimResponse, notice
    final = people.office.get(f"/determinations/{rid}").json()
    assert final["outcome"] == "denied" and final["sections"]["unmet"] == ["QL"]
    assert final["review"]["reviewer"] == "user pat (pharmacist)"
    assert final["review"]["recommended"] == "denied"
    claim = people.office.get(f"/ClaimResponse/{rid}").json()
    assert claim["outcome"] == "complete"
    notes = [n["text"] for n in claim["processNote"]]
    assert (
        "Decided by a pharmacist's review (user pat (pharmacist)): 90 a month is above the labeled dose."
        in notes
    )
    notice = people.office.get(f"/determinations/{rid}/notice?format=text").text
    assert "90 a month is above the labeled dose." in notice
    assert "Appeal to EOCCO" in notice and "within 60 days of the date of this notice" in notice
    assert "State fair hearing" in notice

    # every step, in order: submitted, the case opened, decided, the notice read
    trail = people.pharmacist.get(f"/review/cases/{rid}").json()["trail"]
    steps = [t["what"] for t in trail]
    assert steps[0] == "submitted"
    assert f"review case {rid}" in steps
    assert "deny: pended → denied; 90 a month is above the labeled dose." in steps
    assert f"determinations/{rid}/notice" in steps
    assert any(t["who"].startswith("user pat") for t in trail)
    assert any(t["who"].startswith("user ann") for t in trail)


def test_a_pharmacist_approves_or_pends(people: People, catalog: Catalog) -> None:
    approve = people.submit(request(catalog, 90, "approve-me")).json()["id"]
    pend = people.submit(request(catalog, 90, "pend-me")).json()["id"]
    approved = people.decide(approve, action="approve", rationale="Dose escalation documented.")
    body = approved.json()["determination"]
    assert body["outcome"] == "approved"
    assert body["authorization"]["start"] == AS_OF.isoformat()
    assert body["quantity"]["approved"] == 66  # within the limit that applies
    claim = people.office.get(f"/ClaimResponse/{approve}").json()
    assert claim["preAuthRef"] == approve and claim["preAuthPeriod"]["start"] == AS_OF.isoformat()

    assert (
        people.decide(pend, action="pend", rationale="Need the chart.", request=" ").status_code
        == 400
    )
    pended = people.decide(
        pend, action="pend", rationale="Need the chart.", request="The oncology consult note."
    ).json()["determination"]
    assert (pended["outcome"], pended["review"]["requested"]) == (
        "pended",
        "The oncology consult note.",
    )
    notes = [n["text"] for n in people.office.get(f"/ClaimResponse/{pend}").json()["processNote"]]
    assert "Send: The oncology consult note." in notes
    assert people.pharmacist.get("/review/queue").json()["total"] == 0


def test_an_approval_is_automatic(people: People, catalog: Catalog) -> None:
    created = people.submit(request(catalog, 66, "within"))
    assert created.json()["outcome"] == "complete"
    assert "review" not in people.office.get(f"/determinations/{created.json()['id']}").json()


def test_the_review_pages(people: People, catalog: Catalog) -> None:
    rid = people.submit(request(catalog, 90, "page")).json()["id"]
    assert people.office.get("/review").status_code == 403
    queue = people.pharmacist.get("/review")
    assert queue.status_code == 200 and f'href="/review/{rid}"' in queue.text
    page = people.pharmacist.get(f"/review/{rid}")
    assert "Awaiting your decision" in page.text and "not met" in page.text
    # times in EOCCO's zone (its file's time_zone) with the abbreviation; the JSON keeps UTC
    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    assert case["timeZone"] == "America/Los_Angeles" and case["received"].endswith("+00:00")
    there = datetime.fromisoformat(case["received"]).astimezone(ZoneInfo("America/Los_Angeles"))
    local = f"{there:%B} {there.day}, {there:%Y, %H:%M %Z}"
    assert re.fullmatch(r"\w+ \d{1,2}, \d{4}, \d\d:\d\d P[SD]T", local)
    assert f">{local}</time> — standard" in page.text  # received
    assert f">{local}</time>" in queue.text
    assert " UTC<" not in page.text and " UTC<" not in queue.text
    [sent] = people.office.get("/submissions").json()["submissions"]
    assert (sent["received"], sent["shown"]["received"]) == (case["received"], local)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    form = {"action": "deny", "reasons": "QL", "rationale": "Above the limit."}
    forged = people.pharmacist.post(f"/review/{rid}", data={**form, "csrf": "guess"})
    assert forged.status_code == 403
    done = people.pharmacist.post(
        f"/review/{rid}", data={**form, "csrf": token[1]}, follow_redirects=True
    )
    assert done.status_code == 200 and "Decided: <strong>denied</strong>" in done.text
    assert (
        TestClient(people.pharmacist.app).get("/review", follow_redirects=False).status_code == 303
    )


def mektovi(catalog: Catalog, quantity: int, rid: str, **change: Any) -> dict[str, Any]:
    """A WHA Mektovi initial request meeting every criterion at the labeled
    90 mg a day, for ``quantity`` tablets per 28 days (the limit is 168)."""
    answers = {**base_answers("wha-mektovi", "melanoma_step_met"), "requested_quantity": quantity}
    response = fill(package_for(catalog, "wha-mektovi", "initial"), {**answers, **change},
                    response_id=rid)  # fmt: skip
    response["subject"] = {"display": "Jane Example", "identifier": {"value": "EX123456"}}
    return response


def visible(page: str) -> str:
    """An HTML page's text as read: style and tags out, entities decoded, spaces folded."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_a_quantity_cut_waits_for_a_pharmacist(people: People, catalog: Catalog) -> None:
    """WHA's payer file lists `modified` (Cal. H&S § 1367.01(e)): a request
    above the limit, which the policy approves cut to 168, is held for a
    pharmacist instead of being approved; the pharmacist's approval at the
    limit is an adverse determination with its notice."""
    created = people.submit(mektovi(catalog, 180, "cut"))
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    assert created.json()["outcome"] == "queued"  # not approved
    pending = people.office.get(f"/determinations/{rid}").json()
    assert (pending["outcome"], pending["pendReason"]) == ("pended", "review")
    assert pending["sections"]["review"] == ["QL"] and pending["quantity"] is None
    assert pending["authorization"] is None
    # within the limit: approved at once
    within = people.submit(mektovi(catalog, 168, "within")).json()
    assert within["outcome"] == "complete" and "preAuthRef" in within

    # the queue and the case show a recommended approval for less than requested
    queued = people.pharmacist.get("/review/queue").json()["cases"]
    assert [c["id"] for c in queued] == [rid]
    assert queued[0]["recommended"] == "modified"
    quantity = queued[0]["recommendedQuantity"]
    assert (quantity["approved"], quantity["requested"], quantity["unit"]) == (168, 180, "tablets")
    assert "modified: approve 168 of the 180 tablets requested per 28 days" in visible(
        people.pharmacist.get("/review").text
    )
    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    assert case["recommendation"]["outcome"] == "approved"
    assert case["recommendation"]["quantity"]["modified"] is True
    assert case["overLimit"]["approved"] == 168 and case["overLimit"]["requested"] == 180
    page = people.pharmacist.get(f"/review/{rid}").text
    assert "168 of the 180 tablets requested per 28 days" in visible(page)
    assert 'value="approve-in-full"' in page

    decided = people.decide(rid, action="approve", rationale="The labeled dose needs 168.")
    assert decided.status_code == 200, decided.text
    final = decided.json()["determination"]
    assert final["outcome"] == "approved" and final["quantity"]["modified"] is True
    assert (final["quantity"]["approved"], final["quantity"]["requested"]) == (168, 180)
    assert final["review"]["recommended"] == "modified"
    claim = people.office.get(f"/ClaimResponse/{rid}").json()
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    assert action["valueCodeableConcept"]["coding"][0]["code"] == "A6"  # modified
    assert claim["outcome"] == "complete" and claim["preAuthRef"] == rid

    # the notice: an adverse determination, in text and HTML
    text = people.office.get(f"/determinations/{rid}/notice?format=text").text
    page = visible(people.office.get(f"/determinations/{rid}/notice").text)
    for shown in (text, page):
        for words in (
            "Approved — for less than was requested",
            "This is an adverse determination",
            "This decision was made by a pharmacist's review.",
            "The labeled dose needs 168.",
            "Quantity approved: 168 tablets per 28 days.",
            "Quantity requested: 180 tablets per 28 days.",
            "180 requested, limit 168 per 28 days",
            "information that supports the higher quantity",
            "Appeal (grievance) to WHA",
            "within 180 days of the date of this notice",
            "Independent Medical Review",
        ):
            assert words in shown, words


def test_a_pharmacist_approves_a_cut_in_full_or_denies_it(people: People, catalog: Catalog) -> None:
    full = people.submit(mektovi(catalog, 180, "full")).json()["id"]
    deny = people.submit(mektovi(catalog, 180, "deny")).json()["id"]
    decided = people.decide(full, action="approve-in-full", rationale="Dose escalation.")
    assert decided.status_code == 200, decided.text
    quantity = decided.json()["determination"]["quantity"]
    assert (quantity["approved"], quantity["requested"], quantity["modified"]) == (180, 180, False)
    notice = people.office.get(f"/determinations/{full}/notice?format=text").text
    assert (
        "DECISION: Approved\n" in notice and "Quantity approved: 180 tablets per 28 days." in notice
    )
    assert "adverse" not in notice and "appeal" not in notice.lower()
    claim = people.office.get(f"/ClaimResponse/{full}").json()
    action = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0]
    assert action["valueCodeableConcept"]["coding"][0]["code"] == "A1"

    denied = people.decide(deny, action="deny", reasons=["QL"], rationale="Not at this dose.")
    assert denied.json()["determination"]["sections"]["unmet"] == ["QL"]

    # approve-in-full is for a request above the limit only
    other = people.submit(
        mektovi(catalog, 168, "other", melanoma_braf_v600ek=False, melanoma_braf_test=None)
    ).json()["id"]
    refused = people.decide(other, action="approve-in-full", rationale="In full.")
    assert refused.status_code == 400
    assert "not above the quantity limit" in refused.text
    assert 'value="approve-in-full"' not in people.pharmacist.get(f"/review/{other}").text


def test_a_payer_without_the_rule_cuts_automatically(catalog: Catalog, tmp_path: Path) -> None:
    """MN-DHS-style configuration on WHA's policy: `modified` not listed, so
    the cut is automatic — and its notice is still the adverse determination's."""
    wha = PAYERS["WHA"]
    rule = wha.review.model_copy(update={"outcomes": ["denied", "investigational", "review"]})
    app = create_app(
        Settings(database=str(tmp_path / "no-rule.sqlite3")), catalog=catalog,
        clock=lambda: AS_OF, payers={"WHA": wha.model_copy(update={"review": rule})},
    )  # fmt: skip
    people = People(app)
    created = people.submit(mektovi(catalog, 180, "automatic"))
    assert created.status_code == 201, created.text
    claim = created.json()
    assert claim["outcome"] == "complete"
    assert claim["disposition"] == "Approved, quantity modified to the policy's limit"
    rid = claim["id"]
    determination = people.office.get(f"/determinations/{rid}").json()
    assert determination["quantity"]["approved"] == 168 and "review" not in determination
    assert people.pharmacist.get("/review/queue").json()["total"] == 0
    text = people.office.get(f"/determinations/{rid}/notice?format=text").text
    page = visible(people.office.get(f"/determinations/{rid}/notice").text)
    for shown in (text, page):
        for words in (
            "Approved — for less than was requested",
            "This is an adverse determination",
            "Quantity requested: 180 tablets per 28 days.",
            "information that supports the higher quantity",
            "Appeal (grievance) to WHA",
        ):
            assert words in shown, words
        assert "This decision was made by a pharmacist's review" not in shown


@pytest.mark.parametrize(
    ("good", "bad", "field"),
    [
        ("    hours: 24\n", "    hours: soon\n", "deadlines.standard.hours"),
        # a time zone zoneinfo does not know: misspelt, an abbreviation, a path
        ("time_zone: America/Chicago\n", "time_zone: America/Chicgo\n", "time_zone"),
        ("time_zone: America/Chicago\n", "time_zone: CDT\n", "time_zone"),
        ("time_zone: America/Chicago\n", "time_zone: ../../etc/passwd\n", "time_zone"),
    ],
)
def test_a_bad_payer_file_fails_the_check_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], good: str, bad: str, field: str
) -> None:
    import shutil

    from dtr.cli import main

    shutil.copy(Path("policies/mn-dhs-mekinist.yaml"), tmp_path)
    (tmp_path / "payers").mkdir()
    text = Path("policies/payers/MN-DHS.yaml").read_text(encoding="utf-8")
    assert good in text
    (tmp_path / "payers" / "MN-DHS.yaml").write_text(text.replace(good, bad, 1), encoding="utf-8")
    assert main(["check", "--policies", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MN-DHS.yaml" in err and f"{field}:" in err, err
    (tmp_path / "payers" / "MN-DHS.yaml").write_text(text, encoding="utf-8")
    assert main(["check", "--policies", str(tmp_path)]) == 0
    capsys.readouterr()
    (tmp_path / "payers" / "MN-DHS.yaml").unlink()
    assert main(["check", "--policies", str(tmp_path)]) == 0
    assert "payer MN-DHS: no configuration" in capsys.readouterr().out
