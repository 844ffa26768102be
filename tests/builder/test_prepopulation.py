"""Prepopulation from EHR data, run as a DTR client runs it: the package's
prepopulation Library (its ELM) executed by cql-execution + cql-exec-fhir
against patient records written in tests/cases/prepopulation.yaml, each item's
``initialExpression`` answered from the result, the rest completed by hand,
and the response scored."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from builder.prepopulation import ALTERNATIVE_EXPRESSION, INITIAL_EXPRESSION, PRESCRIBER
from qpackage.catalog import Catalog
from questionnaires.checks import iter_items
from scoring.fill import fill
from scoring.response import check_answers
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, bundled_catalog, package_for, table
from tests.support.dtr_requests import FHIR, ask, canonical, the_bundle
from tests.support.node import run_node
from tests.support.paths import ROOT

EXECUTE = ROOT / "cql" / "execute.mjs"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    database = tmp_path_factory.mktemp("prepopulation") / "store.sqlite3"
    app = create_app(
        Settings(database=str(database)), catalog=bundled_catalog(), clock=lambda: AS_OF, payers={}
    )  # the scorer's own outcomes: no pharmacist review
    return authorize(TestClient(app))


def package_bundle(client: TestClient, questionnaire: dict[str, Any]) -> dict[str, Any]:
    return the_bundle(ask(client, canonical(f"{questionnaire['url']}|{questionnaire['version']}")))


def run_elm(
    libraries: list[dict[str, Any]], main: str, record: list[dict[str, Any]], role: Any
) -> dict[str, Any]:
    """What cql-execution says of each expression, for one patient."""
    import base64

    elm = {}
    for library in libraries:
        content = next(c for c in library["content"] if c["contentType"] == "application/elm+json")
        elm[library["name"]] = json.loads(base64.b64decode(content["data"]))
    request = {
        "elm": elm,
        "main": main,
        "bundle": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in record],
        },
        "parameters": {PRESCRIBER: role} if role is not None else {},
        "executionDateTime": f"{AS_OF.isoformat()}T12:00:00Z",
    }
    assert (EXECUTE.parent / "node_modules").exists(), "run scripts/install-cql-tools"
    result: dict[str, Any] = run_node(EXECUTE, request)
    return result


def prefilled(questionnaire: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Each item's initialExpression answered, as a DTR client fills it: by
    question name, the value an answer would carry (None: left empty)."""
    found = {}
    (library_canonical,) = (
        e["valueCanonical"] for e in questionnaire["extension"] if e["url"].endswith("cqf-library")
    )
    for item, _ in iter_items(questionnaire["item"]):
        expression = next(
            (
                e["valueExpression"]
                for e in item.get("extension", [])
                if e["url"] == INITIAL_EXPRESSION
            ),
            None,
        )
        if expression is None:
            continue
        # the definition by name, the Library by its canonical (DTR's
        # text/cql-identifier), as the reference client resolves a lone name
        assert expression["language"] == "text/cql-identifier"
        name = expression["expression"]
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), name  # needs no quoting
        assert expression["reference"] == library_canonical
        # the DTR alternativeExpression: the same expression, as ELM
        (alternative,) = expression["extension"]
        assert alternative["url"] == ALTERNATIVE_EXPRESSION
        elm = json.loads(alternative["valueExpression"]["expression"])
        assert (elm["type"], elm["name"]) == ("ExpressionRef", name)
        found[name] = results[name]
    return found


@pytest.mark.cases("prepopulation.yaml")
def test_ehr_record_prefills_and_scores(client: TestClient, case: dict[str, Any]) -> None:
    catalog: Catalog = client.app.state.catalog  # type: ignore[attr-defined]
    package = package_for(catalog, case["policy"], case["request"])
    bundle = package_bundle(client, package.questionnaire)
    questionnaire = bundle["entry"][0]["resource"]
    libraries = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Library"
    ]
    (main,) = [lib["name"] for lib in libraries]
    # the launch contexts the CQL reads
    contexts = [
        next(x["valueCoding"]["code"] for x in e["extension"] if x["url"] == "name")
        for e in questionnaire["extension"]
        if e["url"].endswith("launchContext")
    ]
    assert contexts[0] == "patient"
    role = (
        {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "specialty": [{"coding": case["specialties"]}],
        }
        if case["specialties"]
        else None
    )
    if role is not None:
        assert "user" in contexts
    # as the HL7 reference client does: fetched from the EHR is only what the
    # Library's dataRequirement names (the Patient, then each type retrieved)
    declared = {d["type"] for library in libraries for d in library.get("dataRequirement", [])}
    assert "Patient" in declared
    fetched = [r for r in case["record"] if r["resourceType"] in declared]
    results = run_elm(libraries, main, fetched, role)
    found = prefilled(questionnaire, results)
    expected = {
        name: ({k: v for k, v in value.items()} if isinstance(value, dict) else value)
        for name, value in case["expect"].items()
    }
    comparable = {
        name: ({k: value[k] for k in ("system", "code")} if isinstance(value, dict) else value)
        for name, value in found.items()
    }
    assert comparable == expected
    # the prescriber completes the rest by hand; the prefilled answers stay
    answers = {**base_answers(case["policy"], case["complete"]), **case.get("set", {})}
    for name, value in found.items():
        if value is not None:
            answers[name] = value["code"] if isinstance(value, dict) else value
        if name == "prescriber_oncologist" and value is True:
            answers.pop("oncologist_consulted", None)
    response = fill(package, answers, subject="Patient/p1")
    # like any renderer, the client sends no answer to an item the form disables
    dropped = check_answers(package, response, prune_disabled=True).pruned
    names = {package.link_of[name]: name for name in package.link_of}
    for link in dropped:
        answers.pop(names[link], None)
    response = fill(package, answers, subject="Patient/p1")
    reply = client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert reply.status_code in (200, 201), reply.text
    determination = client.get(f"/determinations/{reply.json()['id']}").json()
    assert determination["outcome"] == case["outcome"], determination["sections"]
    if "unmet" in case:
        assert determination["sections"]["unmet"] == case["unmet"]


def test_every_case_names_a_prefilled_question_of_each_kind() -> None:
    """The cases exercise each source the policy format has: the Patient, a
    Condition, an Observation, a medication and the prescriber's specialty."""
    from builder.prepopulation import sources
    from policies.loader import bundled_policies

    kinds = {
        source.kind
        for policy in bundled_policies()
        for question in sources(policy).values()
        for source in question.ehr
    }
    assert kinds == {"birth_date", "condition", "observation", "medication", "specialty"}
    tested = {name for case in table("prepopulation.yaml")["cases"] for name in case["expect"]}
    every = {name for policy in bundled_policies() for name in sources(policy)}
    assert every <= tested


def retrieved_types(node: Any) -> set[str]:
    """The resource types an ELM tree retrieves."""
    if isinstance(node, list):
        return set().union(*(retrieved_types(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set().union(*(retrieved_types(v) for v in node.values())) if node else set()
    if node.get("type") == "Retrieve":
        found.add(node["dataType"].removeprefix("{http://hl7.org/fhir}"))
    return found


def test_each_library_declares_every_type_its_elm_retrieves() -> None:
    """A client that fetches only what a Library's dataRequirement names
    fetches every type the CQL reads; the prescriber comes as a parameter."""
    import base64

    from policies.loader import bundled_policies

    for policy in bundled_policies():
        path = ROOT / "questionnaires" / f"Library-{policy.id}-prepopulation.json"
        if not path.exists():
            continue
        library = json.loads(path.read_text(encoding="utf-8"))
        content = next(c for c in library["content"] if c["contentType"] == "application/elm+json")
        elm = json.loads(base64.b64decode(content["data"]))
        declared = {d["type"] for d in library["dataRequirement"]}
        assert retrieved_types(elm) | {"Patient"} == declared, policy.id
        inputs = [p["name"] for p in library.get("parameter", []) if p["use"] == "in"]
        uses_prescriber = any(
            d.get("name") == PRESCRIBER for d in elm["library"].get("parameters", {}).get("def", [])
        )
        assert inputs == ([PRESCRIBER] if uses_prescriber else []), policy.id
