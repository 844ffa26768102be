"""Pharmacist-confirmed approvals ("pass to RPh; approve" when X is
confirmed), through the HTTP review flow: the fixture payer
(tests/fixtures/payers/FIXTURE.yaml) lets a pharmacist approve the chain
fixture's Funded (tests/fixtures/policies/chain). A request denied on it
alone is pended for a pharmacist naming it; the pharmacist approves citing
it, and only the sections the payer names; a denial resting on anything
else stays automatic. `dtr check` refuses an approval naming no criterion."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dtr.cli import main
from qpackage.catalog import Catalog
from review.config import load_payers
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import People
from tests.support.cases import AS_OF, package_for
from tests.support.paths import FIXTURE_PAYERS, FIXTURES

CHAIN = FIXTURES / "chain"
NOT_FUNDED = {
    "birth_date": "1970-03-15",
    "emergency": False,
    "continuation": False,
    "funded": False,
}


@pytest.fixture()
def people(tmp_path: Path) -> People:
    app = create_app(
        Settings(database=str(tmp_path / "store.sqlite3"), policies=str(CHAIN)),
        payers=load_payers(FIXTURE_PAYERS), clock=lambda: AS_OF,
    )  # fmt: skip
    return People(app)


def submitted(people: People, rid: str, **changes: Any) -> dict[str, Any]:
    package = package_for(Catalog.from_folder(CHAIN), "fixture-chain", "initial")
    response = fill(package, {**NOT_FUNDED, **changes}, response_id=rid)
    response["subject"] = {"reference": "Patient/EX123456", "display": "Jane Example"}
    created = people.submit(response)
    assert created.status_code == 201, created.text
    claim: dict[str, Any] = created.json()
    return claim


def test_a_pharmacist_approves_confirming_the_section(people: People) -> None:
    claim = submitted(people, "not-funded")
    rid = claim["id"]
    # before review: pended for a pharmacist, naming the section
    assert claim["outcome"] == "queued"
    pending = people.office.get(f"/determinations/{rid}").json()
    assert (pending["outcome"], pending["pendReason"]) == ("pended", "review")
    assert pending["sections"]["review"] == ["Funded"]
    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    assert case["recommendation"]["sections"]["unmet"] == ["Funded"]
    assert case["confirmable"] == [
        {
            "section": "Funded",
            "text": "The use is an FDA-approved indication or supported by the compendia",
            "confirm": "the compendia support the use",
        }
    ]
    page = people.pharmacist.get(f"/review/{rid}").text
    assert 'name="confirmed" value="Funded"' in page

    # only the sections the payer names; only an approval confirms; nothing changes
    refused = people.decide(rid, action="approve", confirmed=["Age"], rationale="Adult.")
    assert refused.status_code == 422, refused.text
    assert "review.approvals: Funded), not Age" in refused.text
    wrong = people.decide(
        rid, action="deny", reasons=["Funded"], confirmed=["Funded"], rationale="No."
    )
    assert wrong.status_code == 400, wrong.text
    assert (
        people.decide(rid, action="approve", confirmed="Funded", rationale="x").status_code == 400
    )
    assert people.office.get(f"/determinations/{rid}").json()["outcome"] == "pended"

    decided = people.decide(
        rid, action="approve", confirmed=["Funded"], rationale="NCCN category 2A for this use."
    )
    assert decided.status_code == 200, decided.text
    final = people.office.get(f"/determinations/{rid}").json()
    assert final["outcome"] == "approved"
    assert final["authorization"]["months"] == 6
    assert final["review"]["confirmed"] == ["Funded"]
    assert final["review"]["recommended"] == "denied"
    steps = [t["what"] for t in people.pharmacist.get(f"/review/cases/{rid}").json()["trail"]]
    assert "approve: pended → approved; NCCN category 2A for this use.; confirms Funded" in steps
    # the member's notice says what the pharmacist confirmed, in the policy's words
    notice = people.office.get(f"/determinations/{rid}/notice?format=text").text
    assert "This decision was made by a pharmacist's review." in notice
    confirmed = notice.split("Confirmed by the pharmacist:", 1)[1]
    assert "Funded: The use is an FDA-approved indication or supported by the compendia" in (
        confirmed
    )


def test_the_review_page_approves_confirming_the_section(people: People) -> None:
    rid = submitted(people, "page")["id"]
    form = {
        "csrf": people.pharmacist_csrf, "action": "approve", "confirmed": "Funded",
        "reasons": "Funded", "rationale": "Compendia support confirmed.",
    }  # fmt: skip
    reply = people.pharmacist.post(f"/review/{rid}", data=form, follow_redirects=False)
    assert reply.status_code == 303, reply.text
    final = people.office.get(f"/determinations/{rid}").json()
    assert (final["outcome"], final["review"]["confirmed"]) == ("approved", ["Funded"])


@pytest.mark.parametrize(
    ("changes", "unmet"),
    [
        ({"birth_date": "2010-01-01"}, ["Age", "Funded"]),
        ({"birth_date": "2010-01-01", "funded": True}, ["Age"]),
    ],
    ids=["Funded and another section", "another section"],
)
def test_a_denial_on_anything_else_stays_automatic(
    people: People, changes: dict[str, Any], unmet: list[str]
) -> None:
    claim = submitted(people, "minor", **changes)
    assert claim["outcome"] == "complete"
    final = people.office.get(f"/determinations/{claim['id']}").json()
    assert (final["outcome"], final["sections"]["unmet"]) == ("denied", unmet)
    assert people.pharmacist.get("/review/queue").json()["total"] == 0


def test_the_check_refuses_an_approval_of_no_criterion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(CHAIN / "chain.yaml", tmp_path)
    shutil.copy(CHAIN / "chain.examples.yaml", tmp_path)
    (tmp_path / "payers").mkdir()
    good = (FIXTURE_PAYERS / "FIXTURE.yaml").read_text(encoding="utf-8")
    (tmp_path / "payers" / "FIXTURE.yaml").write_text(good, encoding="utf-8")
    assert main(["check", "--policies", str(tmp_path)]) == 0
    capsys.readouterr()
    for bad, said in [
        (
            "sections: [Funded]",
            "review.approvals[0].sections: Fundd is no criterion of fixture-chain",
        ),
        (
            "policy: fixture-chain",
            "review.approvals[0].policy: no policy fixture-chian of this payer",
        ),
    ]:
        wrong = good.replace(bad, bad.replace("Funded", "Fundd").replace("chain", "chian"))
        (tmp_path / "payers" / "FIXTURE.yaml").write_text(wrong, encoding="utf-8")
        assert main(["check", "--policies", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "FIXTURE.yaml" in err and said in err, err
