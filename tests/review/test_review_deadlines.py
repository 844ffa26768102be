"""The pharmacist's queue gives each request the deadline of its priority.

A payer whose standard and expedited deadlines differ is needed to tell them
apart: WHA decides a standard request within 72 hours and an expedited one
within 24 (policies/payers/WHA.yaml). Each request's due time is its receipt
plus its own deadline, whichever order the two arrive in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from qpackage.catalog import Catalog
from review.config import load_payers
from review.request import PRIORITY_EXTENSION
from scoring.fill import fill
from tests.support.callers import People
from tests.support.cases import base_answers, package_for
from tests.support.paths import PAYER_SETTINGS

WHA = load_payers(PAYER_SETTINGS)["WHA"]


def wha_request(catalog: Catalog, rid: str, priority: str | None) -> dict[str, Any]:
    """A WHA Mektovi request the scorer would deny (the melanoma is not
    advanced): WHA has a pharmacist decide every denial."""
    answers = {**base_answers("wha-mektovi", "melanoma_step_met"), "melanoma_advanced": False}
    response = fill(package_for(catalog, "wha-mektovi", "initial"), answers, response_id=rid)
    if priority is not None:
        response["extension"] = [{"url": PRIORITY_EXTENSION, "valueCode": priority}]
    return response


def test_the_payer_fixture_tells_the_two_deadlines_apart() -> None:
    """What the queue test rests on: WHA's two deadlines differ."""
    assert (WHA.deadlines.standard.hours, WHA.deadlines.expedited.hours) == (72, 24)


@pytest.mark.parametrize("order", [("standard", "expedited"), ("expedited", "standard")])
def test_each_request_in_the_queue_has_its_own_prioritys_deadline(
    people: People, catalog: Catalog, order: tuple[str, str]
) -> None:
    ids = {}
    for priority in order:
        created = people.submit(wha_request(catalog, f"wha-{priority}", priority))
        assert created.status_code == 201, created.text
        ids[priority] = created.json()["id"]
    queue = people.pharmacist.get("/review/queue")
    assert queue.status_code == 200, queue.text
    cases = {case["id"]: case for case in queue.json()["cases"]}
    assert [case["id"] for case in queue.json()["cases"]] == [ids["expedited"], ids["standard"]]
    for priority, rule in (
        ("standard", WHA.deadlines.standard),
        ("expedited", WHA.deadlines.expedited),
    ):
        case = cases[ids[priority]]
        assert case["priority"] == priority
        deadline = case["deadline"]
        assert (deadline["hours"], deadline["text"], deadline["citation"]) == (
            rule.hours,
            rule.text,
            rule.citation,
        ), priority
        received = datetime.fromisoformat(case["received"])
        due = datetime.fromisoformat(deadline["due"])
        assert due - received.replace(second=0, microsecond=0) == timedelta(hours=rule.hours)


def test_a_request_without_a_priority_has_the_standard_deadline(
    people: People, catalog: Catalog
) -> None:
    created = people.submit(wha_request(catalog, "wha-unstated", None))
    assert created.status_code == 201, created.text
    (case,) = people.pharmacist.get("/review/queue").json()["cases"]
    assert case["priority"] == "standard"
    assert case["deadline"]["hours"] == WHA.deadlines.standard.hours
