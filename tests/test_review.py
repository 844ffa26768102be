"""Pharmacist review, end to end through the API: a denial the scorer
recommends is pended for review, reaches the queue, is decided by a
pharmacist, and the ClaimResponse, the determination and the notice follow
the decision; every step is in the trail."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from review.request import NPI_SYSTEM, PRIORITY_EXTENSION
from scoring import Catalog
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.callers import add_user, sign_in
from tests.scoring_cases import base_answers, package_for

FHIR = {"content-type": "application/fhir+json"}
AS_OF = date(2026, 11, 24)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.bundled()


class People:
    def __init__(self, app: Any) -> None:
        store = app.state.store
        add_user(store, "ann", "office", "clinic-a")
        add_user(store, "pat", "pharmacist", None)
        self.office, self.pharmacist = TestClient(app), TestClient(app)
        self.office_csrf = sign_in(self.office, "ann")
        self.pharmacist_csrf = sign_in(self.pharmacist, "pat")

    def submit(self, response: dict[str, Any]) -> Any:
        return self.office.post(
            "/QuestionnaireResponse/$evaluate",
            content=json.dumps(response),
            headers={**FHIR, "X-CSRF-Token": self.office_csrf},
        )

    def decide(self, rid: str, **body: Any) -> Any:
        return self.pharmacist.post(
            f"/review/cases/{rid}/decision",
            content=json.dumps(body),
            headers={**FHIR, "X-CSRF-Token": self.pharmacist_csrf},
        )


@pytest.fixture()
def people(catalog: Catalog, tmp_path: Path) -> People:
    app = create_app(
        Settings(database=str(tmp_path / "review.sqlite3")), catalog=catalog, clock=lambda: AS_OF
    )
    return People(app)


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


def test_a_bad_payer_file_fails_the_check_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from dtr.cli import main

    shutil.copy(Path("policies/mn-dhs-mekinist.yaml"), tmp_path)
    (tmp_path / "payers").mkdir()
    good = Path("policies/payers/MN-DHS.yaml").read_text(encoding="utf-8")
    bad = good.replace("    hours: 24\n", "    hours: soon\n", 1)
    (tmp_path / "payers" / "MN-DHS.yaml").write_text(bad, encoding="utf-8")
    assert main(["check", "--policies", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MN-DHS.yaml" in err and "deadlines.standard.hours" in err
    (tmp_path / "payers" / "MN-DHS.yaml").unlink()
    assert main(["check", "--policies", str(tmp_path)]) == 0
    assert "payer MN-DHS: no configuration" in capsys.readouterr().out
