"""``POST /submissions/check``: the questions a submission would pend for,
asked before anything is sent (the portal's "submit anyway?" step). Nothing
is stored; a request that would not pend for missing answers lists none,
whatever else it would be."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.callers import People
from tests.support.cases import base_answers, package_for


def check(people: People, resource: dict[str, Any]) -> Any:
    return people.office.post(
        "/submissions/check",
        content=json.dumps(resource),
        headers={"content-type": "application/fhir+json", "X-CSRF-Token": people.office_csrf},
    )


@pytest.mark.parametrize(
    ("left_out", "quantity"),
    [
        # an answer the criteria need: the request would pend for it
        (["combination_therapy"], 66),
        # every answer given: nothing to ask, approved or not (90 is above the limit)
        ([], 66),
        ([], 90),
    ],
)
def test_the_questions_a_submission_would_pend_for(
    people: People, catalog: Catalog, left_out: list[str], quantity: int
) -> None:
    package = package_for(catalog, "eocco329", "initial")
    answers = {**base_answers("eocco329", "initial_met"), "requested_quantity": quantity}
    for key in left_out:
        answers.pop(key)
    resource = fill(package, answers, response_id="check")
    reply = check(people, resource)
    assert reply.status_code == 200, reply.text
    expected = [
        {"linkId": package.link_of[key], "question": package.index.questions[key].question.text}
        for key in left_out
    ]
    assert reply.json()["unanswered"] == expected
    # nothing was submitted
    assert people.office.get("/submissions").json()["submissions"] == []


def test_a_stranger_checks_nothing(people: People, catalog: Catalog) -> None:
    resource = fill(package_for(catalog, "eocco329", "initial"), {}, response_id="check")
    stranger = TestClient(people.office.app)
    assert stranger.post("/submissions/check", content=json.dumps(resource)).status_code == 401
