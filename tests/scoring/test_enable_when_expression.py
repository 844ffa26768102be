"""A criterion enabled by an expression enableWhen cannot state (the fixture
tests/fixtures/policies/expressions: Decline applies when the LVEF fell by
more than 10 points), over HTTP: the form carries it as SDC
enableWhenExpression with a variable per answer it reads; ``$evaluate``
refuses an answer it disables, as for enableWhen; ``$next-question`` asks
the criterion only when it applies and keeps the expression where the
answers it reads are asked too. Its decisions are the fixture's worked
examples (``dtr check``, tests/builder/test_verify.py)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from builder.questionnaire import ENABLE_WHEN_EXPRESSION, VARIABLE
from dtr.cli import main
from questionnaires.checks import iter_items
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import folder_catalog, package_for
from tests.support.dtr_requests import FHIR, ask, canonical, the_bundle
from tests.support.paths import FIXTURES

FOLDER = "fixtures/policies/expressions"
POLICY = "fixture-lvef-decline"
AS_OF = date(2026, 11, 24)
MET = {"covered_condition": True, "lvef_baseline": 55, "lvef_current": 50}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    database = tmp_path_factory.mktemp("expressions") / "store.sqlite3"
    app = create_app(
        Settings(database=str(database)),
        catalog=folder_catalog(FOLDER),
        clock=lambda: AS_OF,
        payers={},
    )
    return authorize(TestClient(app))


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, content=json.dumps(body), headers=FHIR)


def _group(questionnaire: dict[str, Any], link_id: str) -> dict[str, Any]:
    return next(i for i, _ in iter_items(questionnaire.get("item", [])) if i["linkId"] == link_id)


def _variables(item: dict[str, Any]) -> dict[str, str]:
    return {
        e["valueExpression"]["name"]: e["valueExpression"]["expression"]
        for e in item.get("extension", [])
        if e["url"] == VARIABLE
    }


def _expression(item: dict[str, Any]) -> str | None:
    found = [e for e in item.get("extension", []) if e["url"] == ENABLE_WHEN_EXPRESSION]
    return found[0]["valueExpression"]["expression"] if found else None


@pytest.mark.parametrize("kind", ["initial", "renewal"])
def test_the_form_says_the_condition_as_sdc_enable_when_expression(
    client: TestClient, kind: str
) -> None:
    form = client.get(f"/Questionnaire/{POLICY}-{kind}").json()
    Questionnaire.model_validate(form)
    decline = _group(form, "Decline")
    assert "enableWhen" not in decline
    assert _expression(decline) == "%lvefBaseline - %lvefCurrent > 10"
    assert _variables(decline) == {
        "lvefBaseline": "%resource.repeat(item).where(linkId='Cardiac.lvef_baseline').answer.value",
        "lvefCurrent": "%resource.repeat(item).where(linkId='Cardiac.lvef_current').answer.value",
    }


@pytest.mark.parametrize(
    ("facts", "outcome"),
    [
        ({**MET, "lvef_baseline": 60}, "approved"),  # a decline of 10: not enabled
        ({**MET, "lvef_baseline": 65, "cardiology_review": True}, "approved"),
        ({**MET, "lvef_baseline": 65}, "pended"),  # the review unanswered
        ({**MET, "lvef_baseline": 65, "cardiology_review": False}, "denied"),
        ({**MET, "lvef_baseline": None}, "pended"),  # the decline unknown: never left out
    ],
    ids=[
        "decline of 10",
        "decline of 15, reviewed",
        "review unanswered",
        "review no",
        "no baseline",
    ],
)
def test_evaluate_decides_through_the_expression(
    client: TestClient, facts: dict[str, Any], outcome: str
) -> None:
    package = package_for(folder_catalog(FOLDER), POLICY, "initial")
    answers = {name: value for name, value in facts.items() if value is not None}
    reply = post(client, "/QuestionnaireResponse/$evaluate", fill(package, answers))
    assert reply.status_code in (200, 201), reply.text
    found = client.get(f"/determinations/{reply.json()['id']}").json()
    assert found["outcome"] == outcome
    if outcome == "pended":
        assert found["missingQuestions"] == (
            ["Decline.cardiology_review"]
            if "lvef_baseline" in answers
            else ["Cardiac.lvef_baseline"]
        )


def test_an_answer_the_expression_disables_is_refused(client: TestClient) -> None:
    """A decline of 5 leaves Decline out: answering its question is refused,
    naming the expression (as an answer to an item enableWhen disables is)."""
    package = package_for(folder_catalog(FOLDER), POLICY, "initial")
    response = fill(package, {**MET, "cardiology_review": True})
    reply = post(client, "/QuestionnaireResponse/$evaluate", response)
    assert reply.status_code == 422, reply.text
    said = " ".join(i["diagnostics"] for i in reply.json()["issue"])
    assert "Decline.cardiology_review is answered but not enabled" in said
    assert "enableWhenExpression %lvefBaseline - %lvefCurrent > 10" in said


def _asked(response: dict[str, Any]) -> set[str]:
    (contained,) = response["contained"]
    return {i["linkId"] for i, _ in iter_items(contained.get("item", [])) if i["type"] != "group"}


@pytest.mark.parametrize(("baseline", "asks_review"), [(65, True), (55, False)])
def test_next_question_asks_the_criterion_only_when_it_applies(
    client: TestClient, baseline: int, asks_review: bool
) -> None:
    package = package_for(folder_catalog(FOLDER), POLICY, "initial")
    static = package.questionnaire
    adaptive = f"{static['url']}-adaptive|{static['version']}"
    response = the_bundle(ask(client, canonical(adaptive), member="Patient/expr"))["entry"][1][
        "resource"
    ]
    facts = {**MET, "lvef_baseline": baseline, "cardiology_review": True}
    by_link = {package.link_of[name]: value for name, value in facts.items()}
    every: set[str] = set()
    for _ in range(10):
        reply = post(client, "/Questionnaire/$next-question", response)
        assert reply.status_code == 200, reply.text
        response = reply.json()
        QuestionnaireResponse.model_validate(response)
        Questionnaire.model_validate(response["contained"][0])
        asked = _asked(response)
        every |= asked
        if "Decline.cardiology_review" in asked:
            # both answers it reads are asked too: the expression and its
            # variables stay, so a client hides the review if they change
            decline = _group(response["contained"][0], "Decline")
            assert _expression(decline) == "%lvefBaseline - %lvefCurrent > 10"
            assert set(_variables(decline)) == {"lvefBaseline", "lvefCurrent"}
        if response["status"] == "completed":
            break
        response["item"] = fill(package, {k: v for k, v in by_link.items() if k in asked})["item"]
    assert response["status"] == "completed"
    assert ("Decline.cardiology_review" in every) is asks_review


def test_the_fixture_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    """Its worked examples decide as written and every approval path is
    taken (Decline applying and not)."""
    assert main(["check", "--policies", str(FIXTURES / "expressions")]) == 0
    printed = capsys.readouterr().out
    assert "approval paths taken 3/3" in printed
