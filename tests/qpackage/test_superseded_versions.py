"""A new request answering a released but superseded form version is decided
under the version in effect when received (tests/cases/superseded.yaml):
through ``$evaluate``, ``dtr score``, the portal's session and
``$next-question``; answers carry over only where the question is
unchanged; the record keeps the version that decided it and the response as
sent; an oversized response is refused before any work per item."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import scoring.response
from dtr.cli import main
from qpackage.adaptive import start
from qpackage.catalog import Catalog
from scoring import score
from scoring.carry import carry_over
from scoring.fill import fill
from scoring.outcome import MAX_ISSUES, InvalidInput, Issue
from service.app import create_app
from service.settings import Settings
from tests.support.callers import People, add_user, authorize, sign_in
from tests.support.cases import AS_OF, base_answers, table
from tests.support.dtr_requests import FHIR, ask, the_bundle


def row(index: int) -> dict[str, Any]:
    """A row of tests/cases/superseded.yaml, for the tests that need one."""
    return dict(table("superseded.yaml")["cases"][index])


EOCCO_1_0 = "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial|1.0.0-r1"


@pytest.fixture()
def client(catalog: Catalog, tmp_path: Path) -> TestClient:
    settings = Settings(database=str(tmp_path / "store.sqlite3"), max_response_body=2_000_000)
    app = create_app(settings, catalog=catalog, clock=lambda: AS_OF, payers={})
    return authorize(TestClient(app))


def old_response(catalog: Catalog, case: dict[str, Any]) -> dict[str, Any]:
    """The case's answers, as a response to the old form the case names."""
    package = catalog.packages[case["form"]]
    answers = base_answers(case["policy"], case["base"])
    answers.update(case.get("set") or {})
    for name in case.get("unset") or []:
        answers.pop(name, None)
    return fill(package, {k: v for k, v in answers.items() if k in package.link_of})


def in_effect_canonical(catalog: Catalog, form: str) -> str:
    current = catalog.in_effect(catalog.packages[form]).questionnaire
    return f"{current['url']}|{current['version']}"


def check_expected(found: dict[str, Any], case: dict[str, Any], current: str) -> None:
    expect = case["expect"]
    assert found["outcome"] == expect["outcome"], case["name"]
    assert found["questionnaire"] == current != case["form"]
    assert found["answered"]["questionnaire"] == case["form"]
    assert found["answered"]["notCarried"] == expect["notCarried"]
    if "pendReason" in expect:
        assert found["pendReason"] == expect["pendReason"]
    if "missing" in expect:
        assert found["sections"]["missing"] == expect["missing"]
    if "missingQuestions" in expect:
        assert found["missingQuestions"] == expect["missingQuestions"]


@pytest.mark.cases("superseded.yaml")
def test_evaluate_decides_under_the_version_in_effect(
    client: TestClient, catalog: Catalog, case: dict[str, Any]
) -> None:
    response = old_response(catalog, case)
    # what the old version's own rules would decide: the approval this closes
    assert score(catalog.packages[case["form"]], response, AS_OF).outcome == case["before"]
    reply = client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert reply.status_code == 201, reply.text  # never a 4xx for a released version
    found = client.get(f"/determinations/{reply.json()['id']}").json()
    check_expected(found, case, in_effect_canonical(catalog, case["form"]))


@pytest.mark.cases("superseded.yaml")
def test_dtr_score_decides_under_the_version_in_effect_and_says_so(
    catalog: Catalog, case: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "response.json"
    path.write_text(json.dumps(old_response(catalog, case)), encoding="utf-8")
    assert main(["score", str(path), "--as-of", AS_OF.isoformat()]) == 0
    printed = capsys.readouterr()
    current = in_effect_canonical(catalog, case["form"])
    check_expected(json.loads(printed.out), case, current)
    assert f"decided under {current}" in printed.err
    assert f"answered {case['form']}" in printed.err


def test_the_record_keeps_the_version_that_decided_it_and_the_response_as_sent(
    client: TestClient, catalog: Catalog
) -> None:
    sent = old_response(catalog, row(0))
    first = client.post("/QuestionnaireResponse/$evaluate", content=json.dumps(sent), headers=FHIR)
    assert first.status_code == 201, first.text
    record_id = first.json()["id"]
    current = in_effect_canonical(catalog, EOCCO_1_0)
    stored = client.get(f"/QuestionnaireResponse/{record_id}").json()
    assert stored["questionnaire"] == current
    # the answers as decided, under the current form; the same answers as sent
    answers = {i["linkId"] for i in _items(stored) if "answer" in i}
    assert answers == {i["linkId"] for i in _items(sent) if "answer" in i}
    record = client.app.state.store.get(record_id)  # type: ignore[attr-defined]
    assert record.submitted == sent and record.questionnaire == current
    # the same response again is the same request, not a new one
    again = client.post("/QuestionnaireResponse/$evaluate", content=json.dumps(sent), headers=FHIR)
    assert again.status_code == 200 and again.json()["id"] == record_id
    notice = client.get(f"/determinations/{record_id}/notice", params={"format": "text"})
    assert notice.status_code == 200 and "KRAS" in notice.text


def test_the_portal_submission_of_an_old_form_is_decided_under_the_version_in_effect(
    client: TestClient, catalog: Catalog
) -> None:
    store = client.app.state.store  # type: ignore[attr-defined]
    add_user(store, "office-a")
    csrf = sign_in(client, "office-a")
    reply = client.post(
        "/QuestionnaireResponse/$evaluate",
        content=json.dumps(old_response(catalog, row(0))),
        headers={**FHIR, "X-CSRF-Token": csrf},
    )
    assert reply.status_code == 201, reply.text
    found = client.get(f"/determinations/{reply.json()['id']}").json()
    check_expected(found, row(0), in_effect_canonical(catalog, EOCCO_1_0))


def test_a_portal_draft_begun_on_an_earlier_version_reopens_on_the_version_in_effect(
    client: TestClient, catalog: Catalog
) -> None:
    add_user(client.app.state.store, "office-b")  # type: ignore[attr-defined]
    csrf = sign_in(client, "office-b")
    draft = old_response(catalog, row(1))
    draft["status"] = "in-progress"
    saved = client.post(
        "/drafts", content=json.dumps(draft), headers={**FHIR, "X-CSRF-Token": csrf}
    )
    assert saved.status_code == 201, saved.text
    reopened = client.get(f"/drafts/{saved.json()['id']}").json()
    current = in_effect_canonical(catalog, EOCCO_1_0)
    assert reopened["questionnaire"] == reopened["response"]["questionnaire"] == current
    assert reopened["answered"]["notCarried"] == row(1)["expect"]["notCarried"]
    kept = {i["linkId"] for i in _items(reopened["response"]) if "answer" in i}
    assert "I.A.birth_date" in kept and "I.D.3.platinum_intolerant" not in kept


def test_next_question_goes_on_under_the_version_in_effect(
    client: TestClient, catalog: Catalog
) -> None:
    old = catalog.packages[EOCCO_1_0]
    current = catalog.in_effect(old)
    answers = base_answers("eocco329", "initial_met")
    answers.pop("document_i_d_2")
    draft = fill(old, {k: v for k, v in answers.items() if k in old.link_of}, status="in-progress")
    begun = start(old, draft, AS_OF, "http://127.0.0.1:8080")
    reply = client.post("/Questionnaire/$next-question", content=json.dumps(begun), headers=FHIR)
    assert reply.status_code == 200, reply.text
    (contained,) = reply.json()["contained"]
    canonical = f"{current.questionnaire['url']}|{current.questionnaire['version']}"
    adaptive = f"{current.questionnaire['url']}-adaptive|{current.questionnaire['version']}"
    assert contained["derivedFrom"] == [canonical, adaptive]
    asked = {i["linkId"] for i in _items(contained)}
    # the report the current form requires is asked; what carried over stays
    assert "I.D.2.documentation" in asked and "I.D.2.kras_mutation" in asked
    assert reply.json()["status"] == "in-progress"


def test_a_context_stored_under_an_earlier_version_reopens_on_the_version_in_effect(
    client: TestClient, catalog: Catalog
) -> None:
    """A pended request a previous release stored under 1.0.0: completing it
    now is decided under the version in effect, so that is the form offered,
    with the answers that carry over."""
    store = client.app.state.store  # type: ignore[attr-defined]
    sent = fill(catalog.packages[EOCCO_1_0], {"birth_date": "1968-04-12"}, subject="Patient/p1")
    first = client.post("/QuestionnaireResponse/$evaluate", content=json.dumps(sent), headers=FHIR)
    record = store.get(first.json()["id"])
    store.save(
        dataclasses.replace(
            record, id="stored-1-0", response_key="stored-1-0", questionnaire=EOCCO_1_0,
            response=sent, submitted=None,
        )
    )  # fmt: skip
    bundle = the_bundle(ask(client, {"name": "context", "valueString": "stored-1-0"}))
    questionnaire = bundle["entry"][0]["resource"]
    current = catalog.in_effect(catalog.packages[EOCCO_1_0]).questionnaire
    assert questionnaire["version"] == current["version"] != "1.0.0-r1"
    draft = bundle["entry"][1]["resource"]
    assert draft["questionnaire"] == f"{current['url']}|{current['version']}"
    answered = {i["linkId"]: i["answer"] for i in _items(draft) if "answer" in i}
    assert [a["valueDate"] for a in answered["I.A.birth_date"]] == ["1968-04-12"]


def test_an_answer_carries_over_only_to_the_same_question(catalog: Catalog) -> None:
    old = catalog.packages[EOCCO_1_0]
    current = catalog.in_effect(old)
    case = row(1)  # "not tolerated" answers: the old item is gone
    moved = carry_over(old, current, old_response(catalog, case))
    assert moved.response["questionnaire"] == in_effect_canonical(catalog, EOCCO_1_0)
    assert moved.not_carried == case["expect"]["notCarried"]
    assert set(moved.carried).isdisjoint(moved.not_carried)
    # a changed question (other answer options) is not carried either
    altered = copy.copy(current)
    spec = current.items["I.D.1.figo_stage"]
    fewer = frozenset(sorted(spec.options)[1:])
    altered.items = {**current.items, spec.link_id: dataclasses.replace(spec, options=fewer)}
    moved = carry_over(old, altered, old_response(catalog, case))
    assert "I.D.1.figo_stage" in moved.not_carried
    assert "I.D.1.figo_stage" not in {i["linkId"] for i in _items(moved.response)}


def test_a_response_larger_than_its_form_is_refused_before_any_work_per_item(
    client: TestClient, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("_walk", "structure_problems", "_answer_value"):
        real = getattr(scoring.response, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(scoring.response, name, counted)
    response = old_response(catalog, row(2))
    response["item"] += [{"linkId": f"extra-{n}", "text": "x"} for n in range(20_000)]
    reply = client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert reply.status_code == 422, reply.text
    (issue,) = reply.json()["issue"]
    assert issue["code"] == "too-long" and "refused unread" in issue["diagnostics"]
    assert calls == []
    assert len(reply.content) < 2_000


def test_an_outcome_lists_at_most_a_hundred_issues_and_counts_the_rest() -> None:
    refused = InvalidInput([Issue("value", f"problem {n}") for n in range(250)])
    issues = refused.outcome()["issue"]
    assert len(issues) == MAX_ISSUES + 1
    assert issues[-1]["diagnostics"] == "150 more problem(s) of the same input not listed"


def _items(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in resource.get("item", []):
        out.append(item)
        out += _items(item)
    return out


def test_a_pharmacist_sees_the_version_answered_and_the_response_as_sent(
    catalog: Catalog, tmp_path: Path
) -> None:
    """EOCCO's pharmacist reviews a recommended denial of a request that
    answered 1.0.0: the case names both versions and keeps the response as
    sent; the decision keeps saying which version the request answered."""
    people = People(
        create_app(
            Settings(database=str(tmp_path / "review.sqlite3")),
            catalog=catalog,
            clock=lambda: AS_OF,
        )
    )
    answers = {**base_answers("eocco329", "initial_met"), "birth_date": "2008-11-25"}  # 17
    old = catalog.packages[EOCCO_1_0]
    sent = fill(old, {k: v for k, v in answers.items() if k in old.link_of})
    reply = people.submit(sent)
    assert reply.status_code == 201, reply.text
    rid = reply.json()["id"]
    case = people.pharmacist.get(f"/review/cases/{rid}").json()
    assert case["recommended"] == "denied" and case["state"] == "awaiting-review"
    assert case["answered"]["questionnaire"] == EOCCO_1_0
    assert case["questionnaire"] == in_effect_canonical(catalog, EOCCO_1_0)
    assert case["submitted"] == sent
    page = people.pharmacist.get(f"/review/{rid}").text
    assert 'id="answered"' in page and EOCCO_1_0 in page
    decided = people.decide(rid, action="approve", rationale="18 next week; treat now.")
    assert decided.status_code == 200, decided.text
    found = people.office.get(f"/determinations/{rid}").json()
    assert found["outcome"] == "approved" and found["answered"]["questionnaire"] == EOCCO_1_0
