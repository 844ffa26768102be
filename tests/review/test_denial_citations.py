"""A pharmacist's denial cites only what the criteria support, through the
API and the case page: a section the criteria show met or not applying is
refused, naming it and its status, and nothing changes; an override with
its reason is kept in the trail, the ClaimResponse and the notice, which
never call the section not met. The case table
tests/cases/denial_citations.yaml holds which sections each request may cite."""

from __future__ import annotations

import re
from typing import Any

import pytest

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.review.test_review import mektovi, visible
from tests.support.callers import People
from tests.support.cases import base_answers, package_for

OVERRIDE = "The chart shows 132 a month taken, twice the limit."


def nsclc(catalog: Catalog, rid: str) -> dict[str, Any]:
    """An EOCCO329 initial request for non-small cell lung cancer at the
    limit (66): investigational, held for a pharmacist."""
    answers = {**base_answers("eocco329", "not_lgsoc"), "diagnosis": "II.C"}
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {"display": "Jane Example", "identifier": {"value": "EX123456"}}
    return response


def awaiting(people: People, catalog: Catalog, which: str, rid: str = "cite") -> str:
    body = nsclc(catalog, rid) if which == "nsclc" else mektovi(catalog, 180, rid)
    created = people.submit(body)
    assert created.status_code == 201 and created.json()["outcome"] == "queued", created.text
    return str(created.json()["id"])


@pytest.mark.cases("denial_citations.yaml")
def test_a_denial_cites_what_the_criteria_support(
    people: People, catalog: Catalog, case: dict[str, Any]
) -> None:
    record_id = awaiting(people, catalog, case["request"])
    expect = case["expect"]
    body: dict[str, Any] = {"action": "deny", "reasons": case["reasons"], "rationale": "Denied."}
    if "override" in case:
        body["override"] = case["override"]
    reply = people.decide(record_id, **body)
    assert reply.status_code == expect["status"], reply.text
    if expect["status"] != 200:
        assert expect["says"] in reply.json()["issue"][0]["diagnostics"]
        # nothing changed: still awaiting the pharmacist, no action in the trail
        case_now = people.pharmacist.get(f"/review/cases/{record_id}").json()
        assert case_now["state"] == "awaiting-review"
        assert not any(t["what"].startswith("deny") for t in case_now["trail"])
        return
    decided = reply.json()["determination"]
    assert decided["outcome"] == expect["outcome"]
    for key in ("unmet", "investigational"):
        if key in expect:
            assert decided["sections"][key] == expect[key]
    override = decided["review"].get("override")
    assert (override or {}).get("sections", []) == expect["overridden"]


def test_an_override_is_kept_and_shown_never_as_not_met(people: People, catalog: Catalog) -> None:
    record_id = awaiting(people, catalog, "nsclc")
    decided = people.decide(
        record_id, action="deny", reasons=["II.C", "QL"], override=OVERRIDE,
        rationale="NSCLC is investigational under the policy.",
    )  # fmt: skip
    assert decided.status_code == 200, decided.text
    final = people.office.get(f"/determinations/{record_id}").json()
    assert final["review"]["override"] == {"sections": ["QL"], "reason": OVERRIDE}
    assert "QL" not in final["sections"]["unmet"]

    # the trail: the decision and its override
    trail = [t["what"] for t in people.pharmacist.get(f"/review/cases/{record_id}").json()["trail"]]
    assert (
        "deny: pended → investigational; NSCLC is investigational under the policy.; override:"
        f" cites QL against the criteria's status: {OVERRIDE}"
    ) in trail

    # the ClaimResponse: cited by the pharmacist, not "not met"
    claim = people.office.get(f"/ClaimResponse/{record_id}").text
    assert "Cited by the pharmacist: QL" in claim and "Not met: QL" not in claim

    # the notice, in text and HTML: the override apart, never "not met"
    text = people.office.get(f"/determinations/{record_id}/notice?format=text").text
    page = visible(people.office.get(f"/determinations/{record_id}/notice").text)
    for shown in (text, page):
        assert "Investigational use (not covered)" in shown
        assert "Criteria not met" not in shown
        assert "Also cited by the pharmacist" in shown and OVERRIDE in shown


def test_the_case_page_refuses_a_met_section_and_changes_nothing(
    people: People, catalog: Catalog
) -> None:
    record_id = awaiting(people, catalog, "nsclc")
    page = people.pharmacist.get(f"/review/{record_id}").text
    # each section's status beside its choice
    assert re.search(
        r'value="QL"[^>]*> <strong>QL</strong>[^<]*<small class="status">\(met\)', page
    )
    assert 'value="II.C" checked' in page
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token
    form = {"action": "deny", "reasons": "QL", "rationale": "Above the limit.", "csrf": token[1]}
    refused = people.pharmacist.post(f"/review/{record_id}", data=form)
    assert refused.status_code == 200
    assert "QL is met" in visible(refused.text) and 'id="problem"' in refused.text
    assert "Awaiting your decision" in refused.text
    assert people.pharmacist.get("/review/queue").json()["total"] == 1

    # with the override: decided, the override on the case's trail
    done = people.pharmacist.post(
        f"/review/{record_id}",
        data={**form, "reasons": "QL", "override": OVERRIDE},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "Decided: <strong>denied</strong>" in done.text
    assert f"override: cites QL against the criteria&#39;s status: {OVERRIDE}" in done.text
