"""A request while an approval of the same policy for the same member still
runs: shown to the office (the determination) and the pharmacist (the case),
as an early renewal or a possible duplicate; never a change of decision."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from qpackage.catalog import Catalog
from review.overlap import running_approvals
from scoring.fill import fill
from tests.support.callers import People
from tests.support.cases import base_answers, package_for

TERM: dict[str, Any] = {"authorization": {"start": "2026-01-01", "end": "2026-06-30"}}


@pytest.mark.parametrize(
    ("received", "kind", "expected"),
    [
        (date(2026, 1, 1), "renewal", ["early-renewal"]),  # its first day
        (date(2026, 6, 30), "initial", ["duplicate"]),  # its last day
        (date(2026, 7, 1), "renewal", []),  # the day after: it has ended
        (date(2025, 12, 31), "initial", []),  # before it starts
    ],
)
def test_an_approval_runs_on_the_days_of_its_term(
    received: date, kind: Any, expected: list[str]
) -> None:
    running = running_approvals([("a", "q|1", TERM)], received, kind, this="new")
    assert [r.overlap for r in running] == expected


def test_the_request_itself_and_an_approval_with_no_term_are_not_running() -> None:
    approvals: list[tuple[str, str, dict[str, Any]]] = [
        ("new", "q|1", TERM),
        ("old", "q|1", {"authorization": None}),
    ]
    assert running_approvals(approvals, date(2026, 3, 1), "initial", this="new") == []


def _submit(people: People, catalog: Catalog, kind: str, patient: str, rid: str) -> str:
    package = package_for(catalog, "eocco329", kind)
    answers = base_answers("eocco329", f"{kind}_met")
    # each its own response (the same one sent twice is one request)
    reply = people.submit(fill(package, answers, subject=f"Patient/{patient}", response_id=rid))
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def test_the_office_and_the_pharmacist_see_an_approval_still_running(
    app: Any, catalog: Catalog
) -> None:
    people = People(app)
    first = _submit(people, catalog, "initial", "p1", "first")
    determination = people.office.get(f"/determinations/{first}").json()
    assert determination["outcome"] == "approved" and "runningApprovals" not in determination

    renewal = _submit(people, catalog, "renewal", "p1", "renewal")
    seen = people.office.get(f"/determinations/{renewal}").json()
    (running,) = seen["runningApprovals"]
    term = determination["authorization"]
    assert running["overlap"] == "early-renewal"
    assert (running["start"], running["end"]) == (term["start"], term["end"])
    assert "early renewal" in running["text"] and "id" not in running  # not another's record id

    again = _submit(people, catalog, "initial", "p1", "again")
    overlaps = people.office.get(f"/determinations/{again}").json()["runningApprovals"]
    assert "duplicate" in {r["overlap"] for r in overlaps}

    other = _submit(people, catalog, "initial", "p2", "other")  # another member
    assert "runningApprovals" not in people.office.get(f"/determinations/{other}").json()

    case = people.pharmacist.get(f"/review/cases/{renewal}").json()
    # requests received within the same second count as before it: "again" may be there too
    (shown,) = [r for r in case["runningApprovals"] if r["id"] == first]
    assert shown["case"].endswith(f"/review/{first}") and shown["overlap"] == "early-renewal"
    page = people.pharmacist.get(f"/review/{renewal}").text
    assert "early renewal" in page and f"/review/{first}" in page
