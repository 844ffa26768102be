"""Adaptive forms over HTTP: the adaptive package, ``$next-question`` round
trips to ``completed``, and the equivalence of the adaptive and the static
form — the same facts reach the same determination, citing the same
sections — on every case of every scoring table."""

from __future__ import annotations

import itertools
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from cql_like.engine import CompiledRequest
from qpackage.adaptive import SDC_ADAPTIVE, SDC_ENTRY_MODE
from qpackage.draft import QR_COVERAGE
from questionnaires.checks import iter_items
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, bundled_catalog, folder_catalog, package_for
from tests.support.dtr_requests import FHIR, ask, canonical, the_bundle
from tests.support.paths import ROOT

BASE = "http://127.0.0.1:8080"  # the default public URL (Settings)
_CLIENTS: dict[tuple[str | None, date], TestClient] = {}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("adaptive")


def client_for(folder: Path, policies: str | None, as_of: date) -> TestClient:
    key = (policies, as_of)
    if key not in _CLIENTS:
        catalog = folder_catalog(policies) if policies else bundled_catalog()
        database = folder / f"store-{len(_CLIENTS)}.sqlite3"
        # the scorer's own outcomes: no pharmacist review (tests/review/test_review.py)
        app = create_app(
            Settings(database=str(database)), catalog=catalog, clock=lambda: as_of, payers={}
        )
        _CLIENTS[key] = authorize(TestClient(app))
    return _CLIENTS[key]


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, content=json.dumps(body), headers=FHIR)


def adaptive_package(client: TestClient, package: CompiledRequest) -> dict[str, Any]:
    """The adaptive form's package Bundle for a member with nothing on record."""
    static = package.questionnaire
    adaptive = f"{static['url']}-adaptive|{static['version']}"
    return the_bundle(ask(client, canonical(adaptive), member="Patient/adaptive"))


def asked(response: dict[str, Any]) -> list[str]:
    """The questions of the response's contained Questionnaire, in order."""
    (contained,) = response["contained"]
    return [
        item["linkId"]
        for item, _ in iter_items(contained.get("item", []))
        if item["type"] not in ("group", "display")
    ]


def run_adaptive(
    client: TestClient, package: CompiledRequest, answers: dict[str, Any]
) -> tuple[dict[str, Any], list[list[str]]]:
    """Answer each round's questions from ``answers`` (by name) until the form
    is completed or asks only what the facts do not say; the final response
    and the questions of each round."""
    # as a client does: the draft is posted first, and each reply's new
    # questions answered and posted again
    response = adaptive_package(client, package)["entry"][1]["resource"]
    by_link = {package.link_of.get(name, name): value for name, value in answers.items()}
    rounds: list[list[str]] = []
    for _ in range(50):
        reply = post(client, "/Questionnaire/$next-question", response)
        assert reply.status_code == 200, reply.text
        response = reply.json()
        QuestionnaireResponse.model_validate(response)
        rounds.append(asked(response))
        if response["status"] == "completed":
            break
        given = {link: by_link[link] for link in asked(response) if link in by_link}
        answered = {
            item["linkId"] for item, _ in iter_items(response.get("item", [])) if "answer" in item
        }
        if set(given) <= answered:
            break  # nothing more the facts can answer
        response["item"] = fill(package, given)["item"]
    return response, rounds


def determination(client: TestClient, response: dict[str, Any]) -> dict[str, Any]:
    reply = post(client, "/QuestionnaireResponse/$evaluate", response)
    assert reply.status_code in (200, 201), reply.text
    found: dict[str, Any] = client.get(f"/determinations/{reply.json()['id']}").json()
    return {
        key: found[key]
        for key in (
            "outcome",
            "sections",
            "pendReason",
            "authorization",
            "quantity",
            "missingQuestions",
            "quantityLimits",
        )
    }


@pytest.mark.cases("scoring")
def test_adaptive_and_static_forms_decide_alike(folder: Path, case: dict[str, Any]) -> None:
    as_of = case.get("as_of", AS_OF)
    client = client_for(folder, case.get("folder"), as_of)
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    package = package_for(catalog, case["policy"], case["request"], case.get("drug"))
    static = determination(client, fill(package, case["answers"], subject="Patient/static"))
    final, rounds = run_adaptive(client, package, case["answers"])
    final["status"] = "completed"
    adaptive = determination(client, final)
    assert adaptive == static
    # earlier questions are kept, and every one is a question of the static form
    assert all(set(a) <= set(b) for a, b in itertools.pairwise(rounds))
    questions = {link for link, spec in package.items.items() if spec.type != "group"}
    assert set(rounds[-1]) <= questions


def _forms() -> list[Any]:
    out = []
    # Cotellic's BRAF result is read by a pharmacist before any approval: its
    # complete requests end pended for review
    for policy, bases, outcome in (
        ("eocco329", {"initial": "initial_met", "renewal": "renewal_met"}, "approved"),
        ("mn-dhs-mekinist", {"initial": "melanoma_met", "renewal": "renewal_met"}, "approved"),
        ("mn-dhs-cotellic", {"initial": "initial_met", "renewal": "renewal_met"}, "pended"),
        ("wha-mektovi", {"initial": "melanoma_step_met", "renewal": "renewal_met"}, "approved"),
    ):
        for request, base in bases.items():
            out.append(pytest.param(policy, request, base, outcome, id=f"{policy}-{request}"))
    return out


@pytest.mark.parametrize(("policy", "request_kind", "base", "outcome"), _forms())
def test_round_trip_reaches_completed(
    folder: Path, policy: str, request_kind: str, base: str, outcome: str
) -> None:
    client = client_for(folder, None, AS_OF)
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    package = package_for(catalog, policy, request_kind)
    bundle = adaptive_package(client, package)
    questionnaire, draft = (e["resource"] for e in bundle["entry"][:2])
    # the adaptive form: no items, questionnaireAdaptive pointing at this service
    Questionnaire.model_validate(questionnaire)
    assert "item" not in questionnaire
    assert {"url": SDC_ADAPTIVE, "valueUrl": BASE} in questionnaire["extension"]
    static = package.questionnaire
    assert questionnaire["derivedFrom"] == [f"{static['url']}|{static['version']}"]
    # its draft: a contained Questionnaire derived from the static form and
    # the adaptive one, holding only what the draft already answers (the first
    # $next-question brings the questions: a client looping on new ones goes on)
    assert draft["questionnaire"] == "#adaptive" and draft["status"] == "in-progress"
    (contained,) = draft["contained"]
    adaptive = f"{questionnaire['url']}|{questionnaire['version']}"
    assert contained["derivedFrom"] == [*questionnaire["derivedFrom"], adaptive]
    held = {i["linkId"] for i, _ in iter_items(contained.get("item", [])) if i["type"] != "group"}
    answered = {i["linkId"] for i, _ in iter_items(draft.get("item", [])) if "answer" in i}
    assert held <= answered
    assert any(e["url"] == QR_COVERAGE for e in draft["extension"])
    final, rounds = run_adaptive(client, package, base_answers(policy, base))
    assert final["status"] == "completed"
    assert determination(client, final)["outcome"] == outcome
    assert len(rounds) >= 2


def test_a_diagnosis_outside_the_policy_asks_no_prior_therapy(folder: Path) -> None:
    client = client_for(folder, None, AS_OF)
    package = package_for(client.app.state.catalog, "eocco329", "initial")  # type: ignore[attr-defined]
    facts = {**base_answers("eocco329", "initial_met"), "diagnosis": "II.B"}
    final, rounds = run_adaptive(client, package, facts)
    every = {link for round_ in rounds for link in round_}
    assert final["status"] == "completed"
    assert not any(link.startswith(("I.D.3", "I.D.4", "I.D.5", "I.D.6", "I.D.7")) for link in every)
    assert determination(client, final)["outcome"] == "investigational"


def test_a_changed_answer_drops_what_it_no_longer_enables(folder: Path) -> None:
    client = client_for(folder, None, AS_OF)
    package = package_for(client.app.state.catalog, "eocco329", "initial")  # type: ignore[attr-defined]
    facts = base_answers("eocco329", "initial_met")
    final, _ = run_adaptive(client, package, facts)
    # now the diagnosis changes to one outside the policy: the answers to the
    # LGSOC questions, sent as they were, are dropped from what comes back
    final["item"] = fill(package, {**facts, "diagnosis": "II.C"})["item"]
    sent = {item["linkId"] for item, _ in iter_items(final["item"]) if "answer" in item}
    assert any(link.startswith("I.D.3.") for link in sent)
    reply = post(client, "/Questionnaire/$next-question", final)
    assert reply.status_code == 200, reply.text
    back = {
        item["linkId"]: item["answer"]
        for item, _ in iter_items(reply.json().get("item", []))
        if "answer" in item
    }
    assert back["I.D.diagnosis"][0]["valueCoding"]["code"] == "II.C"
    assert not any(link.startswith("I.D.3.") for link in back)


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({"resourceType": "Bundle"}, "takes a QuestionnaireResponse"),
        ({"resourceType": "Parameters", "parameter": []}, "'questionnaire-response'"),
        (
            {
                "resourceType": "QuestionnaireResponse",
                "status": "in-progress",
                "questionnaire": "#nope",
            },
            "no contained Questionnaire #nope",
        ),
        (
            {
                "resourceType": "QuestionnaireResponse",
                "status": "in-progress",
                "questionnaire": "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial|1.2.0-r3",
            },
            "a response to a static form needs no next question",
        ),
    ],
    ids=["a Bundle", "Parameters without the response", "no contained form", "a static form"],
)
def test_an_invalid_response_is_400(folder: Path, body: dict[str, Any], expect: str) -> None:
    client = client_for(folder, None, AS_OF)
    reply = post(client, "/Questionnaire/$next-question", body)
    assert reply.status_code == 400, reply.text
    assert expect in " ".join(i["diagnostics"] for i in reply.json()["issue"])


def test_an_unknown_linkid_and_the_parameters_form(folder: Path) -> None:
    client = client_for(folder, None, AS_OF)
    package = package_for(client.app.state.catalog, "mn-dhs-cotellic", "initial")  # type: ignore[attr-defined]
    draft = adaptive_package(client, package)["entry"][1]["resource"]
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "questionnaire-response", "resource": draft}],
    }
    assert post(client, "/Questionnaire/$next-question", wrapped).status_code == 200
    instance = f"/Questionnaire/{package.questionnaire['id']}-adaptive/$next-question"
    assert post(client, instance, draft).status_code == 200
    draft["item"] = [{"linkId": "no.such.item", "answer": [{"valueBoolean": True}]}]
    reply = post(client, "/Questionnaire/$next-question", draft)
    assert reply.status_code == 400 and "no.such.item" in reply.text


def test_the_adaptive_form_is_read_and_searched(folder: Path) -> None:
    client = client_for(folder, None, AS_OF)
    read = client.get("/Questionnaire/eocco329-initial-adaptive").json()
    Questionnaire.model_validate(read)
    assert {"url": SDC_ADAPTIVE, "valueUrl": BASE} in read["extension"]
    found = client.get("/Questionnaire", params={"url": read["url"]}).json()
    assert read["version"] in [e["resource"]["version"] for e in found["entry"]]
    assert client.get("/Questionnaire/nope-adaptive").status_code == 404


# the release times `dtr build` recorded for the bundled forms
RELEASED_AT: dict[str, str] = json.loads(
    (ROOT / "questionnaires" / "released-at.json").read_text(encoding="utf-8")
)
PREPOPULATION = ("launchContext", "cqf-library")


def _moment(text: str) -> str:
    return text.replace("Z", "+00:00")


def _extensions(resource: dict[str, Any], *endings: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e["url"].endswith(endings)]


@pytest.mark.parametrize(("policy", "request_kind", "base", "outcome"), _forms())
def test_the_adaptive_forms_carry_the_must_support_elements(
    folder: Path, policy: str, request_kind: str, base: str, outcome: str
) -> None:
    """Each adaptive form and the contained Questionnaire of every reply say
    how they are filled (SDC entryMode prior-edit), the static form's CQL
    Library and launch contexts, and the version's effectivePeriod: its
    release time, no end while it is the version in effect."""
    client = client_for(folder, None, AS_OF)
    package = package_for(client.app.state.catalog, policy, request_kind)  # type: ignore[attr-defined]
    static = package.questionnaire
    released = RELEASED_AT[f"{static['url']}|{static['version']}"]
    bundle = adaptive_package(client, package)
    questionnaire, draft = (e["resource"] for e in bundle["entry"][:2])
    read = client.get(f"/Questionnaire/{static['id']}-adaptive").json()
    final, rounds = run_adaptive(client, package, base_answers(policy, base))
    assert final["status"] == "completed" and len(rounds) >= 2
    for form in (questionnaire, read, draft["contained"][0], final["contained"][0]):
        Questionnaire.model_validate(form)
        assert {"url": SDC_ENTRY_MODE, "valueCode": "prior-edit"} in form["extension"]
        assert _extensions(form, *PREPOPULATION) == _extensions(static, *PREPOPULATION)
        assert form["effectivePeriod"] == {"start": _moment(released)}
    # the Library the adaptive form names comes in its package
    assert {
        f"{e['resource']['url']}|{e['resource']['version']}"
        for e in bundle["entry"][2:]
        if e["resource"]["resourceType"] == "Library"
    } == {e["valueCanonical"] for e in _extensions(questionnaire, "cqf-library")}


def test_a_superseded_version_ends_when_the_next_is_released(folder: Path) -> None:
    """An earlier version asked for by its canonical: its effectivePeriod ends
    when the version after it was released (a client then stops a response
    begun under it, DTR spec-123); the adaptive form read by its id is the
    version in effect, with no end."""
    client = client_for(folder, None, AS_OF)
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    current = package_for(catalog, "eocco329", "initial").questionnaire
    times = sorted(
        (moment, canonical.split("|")[1])
        for canonical, moment in RELEASED_AT.items()
        if canonical.split("|")[0] == current["url"]
    )
    # the version released just before the current one, and the current one's release
    (start, earlier), (end, later) = times[-2], times[-1]
    assert later == current["version"]
    reply = ask(client, canonical(f"{current['url']}-adaptive|{earlier}"), member="Patient/ended")
    questionnaire = the_bundle(reply)["entry"][0]["resource"]
    Questionnaire.model_validate(questionnaire)
    assert questionnaire["version"] == earlier
    assert questionnaire["effectivePeriod"] == {"start": _moment(start), "end": _moment(end)}
    read = client.get(f"/Questionnaire/{current['id']}-adaptive").json()
    assert "end" not in read["effectivePeriod"]
    # EOCCO329 prefills from the EHR: the patient's and the prescriber's context
    contexts = {
        part["valueCoding"]["code"]
        for e in _extensions(read, "launchContext")
        for part in e["extension"]
        if part["url"] == "name"
    }
    assert contexts == {"patient", "user"}
    assert len(_extensions(read, "cqf-library")) == 1


def test_no_release_time_known_no_effective_period(folder: Path) -> None:
    """A payer folder that has recorded no release (the fixture policies):
    nothing is claimed about when its forms hold."""
    client = client_for(folder, "fixtures/policies/constructs", AS_OF)
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    assert not catalog.released_at
    package = next(iter(catalog.current.values()))
    read = client.get(f"/Questionnaire/{package.questionnaire['id']}-adaptive").json()
    Questionnaire.model_validate(read)
    assert "effectivePeriod" not in read
    assert {"url": SDC_ENTRY_MODE, "valueCode": "prior-edit"} in read["extension"]


def test_next_question_replies_keep_enable_when(folder: Path) -> None:
    """dtr-questionnaire-adapt's must-support item.enableWhen: a reply keeps a
    condition where every question it reads is asked too, and none reading a
    question not asked."""
    client = client_for(folder, None, AS_OF)
    package = package_for(client.app.state.catalog, "eocco329", "initial")  # type: ignore[attr-defined]
    response = adaptive_package(client, package)["entry"][1]["resource"]
    facts = base_answers("eocco329", "initial_met")
    by_link = {package.link_of.get(name, name): value for name, value in facts.items()}
    kept = 0
    for _ in range(50):
        reply = post(client, "/Questionnaire/$next-question", response)
        assert reply.status_code == 200, reply.text
        response = reply.json()
        (contained,) = response["contained"]
        questions = set(asked(response))
        for item, _ in iter_items(contained.get("item", [])):
            for condition in item.get("enableWhen", []):
                assert condition["question"] in questions
                kept += 1
        if response["status"] == "completed":
            break
        response["item"] = fill(package, {k: v for k, v in by_link.items() if k in questions})[
            "item"
        ]
    assert response["status"] == "completed"
    assert kept
