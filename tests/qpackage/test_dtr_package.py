"""DTR 2.2.0 payer operations over HTTP: ``$questionnaire-package`` (by order,
by canonical, by the context of a pended request), its Bundle and draft
response, ValueSets with ``$expand``, and ``$log-questionnaire-errors``."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhir.resources.R4B.valueset import ValueSet

from dtr.cli import main
from qpackage.catalog import Catalog
from qpackage.draft import INFORMATION_ORIGIN, INTENDED_USE, QR_CONTEXT, QR_COVERAGE
from questionnaires.checks import iter_items
from review.config import PayerConfig, ReviewRule, load_payers
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from tests.support.callers import add_user, authorize, sign_in
from tests.support.cases import AS_OF, base_answers, folder_catalog, package_for
from tests.support.dtr_requests import (
    EOCCO,
    FHIR,
    MN_DHS,
    PACKAGE,
    WHA,
    ask,
    canonical,
    coverage,
    order,
)
from tests.support.paths import PAYER_SETTINGS, ROOT

PAYERS = PAYER_SETTINGS
POLICIES = ROOT / "policies"

NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
BASE = "https://pa-dtr.example.org/fhir"
NDC_MEKINIST = [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0078-0668-15"}]


def automatic(folder: Path) -> dict[str, PayerConfig]:
    """A folder's payers, each deciding every outcome itself (no review): how
    a Coverage names them (their identifiers) kept."""
    rule = ReviewRule(outcomes=[], basis="every outcome decided by the algorithm")
    return {k: p.model_copy(update={"review": rule}) for k, p in load_payers(folder).items()}


def make_client(catalog: Catalog, tmp_path: Path) -> TestClient:
    settings = Settings(database=str(tmp_path / "store.sqlite3"))
    app = create_app(settings, catalog=catalog, clock=lambda: AS_OF, payers=automatic(PAYERS))
    app.state.service.now = lambda: NOW
    return authorize(TestClient(app))


def pharmacist(client: TestClient) -> TestClient:
    """A pharmacist signed in to the same service as ``client``."""
    app = client.app
    add_user(app.state.store, "pat", "pharmacist", None)  # type: ignore[attr-defined]
    staff = TestClient(app)
    sign_in(staff, "pat")
    return staff


@pytest.fixture()
def client(catalog: Catalog, tmp_path: Path) -> TestClient:
    return make_client(catalog, tmp_path)


def context(value: str) -> dict[str, Any]:
    return {"name": "context", "valueString": value}


def outcome_issues(reply: Any) -> list[dict[str, Any]]:
    outcome = next(p["resource"] for p in reply.json()["parameter"] if p["name"] == "outcome")
    OperationOutcome.model_validate(outcome)
    return list(outcome["issue"])


def refused(reply: Any, status: int = 400) -> str:
    assert reply.status_code == status, reply.text
    OperationOutcome.model_validate(reply.json())
    return " | ".join(i["diagnostics"] for i in reply.json()["issue"])


def bundles(reply: Any, catalog: Catalog) -> list[dict[str, Any]]:
    """The package Bundles, each checked for the DTR-QPackageBundle shape:
    Questionnaire first, exactly one draft response naming it, then every
    ValueSet it references (version-specific, once, expanded as of now when
    small), and nothing else — no Library."""
    assert reply.status_code == 200, reply.text
    Parameters.model_validate(reply.json())
    names = [p["name"] for p in reply.json()["parameter"]]
    assert names.count("outcome") == 1 and set(names) <= {"packagebundle", "outcome"}
    found = [p["resource"] for p in reply.json()["parameter"] if p["name"] == "packagebundle"]
    for bundle in found:
        Bundle.model_validate(bundle)
        assert bundle["type"] == "collection"
        resources = [e["resource"] for e in bundle["entry"]]
        questionnaire, draft, *dependencies = resources
        assert questionnaire["resourceType"] == "Questionnaire"
        assert draft["resourceType"] == "QuestionnaireResponse"
        libraries = [r for r in dependencies if r["resourceType"] == "Library"]
        value_sets = dependencies[len(libraries) :]
        assert {r["resourceType"] for r in value_sets} <= {"ValueSet"}
        if f"{questionnaire['url']}|{questionnaire['version']}" in catalog.current:
            # every Library it names is in the Bundle, with CQL and ELM; never the scorer's
            named = [
                e["valueCanonical"]
                for e in questionnaire.get("extension", [])
                if e["url"].endswith("cqf-library")
            ]
            assert named == [f"{lib['url']}|{lib['version']}" for lib in libraries]
            for library in libraries:
                kinds = [c["contentType"] for c in library["content"]]
                assert kinds == ["text/cql", "application/elm+json"]
                assert not library["id"].endswith("-logic")
        referenced = [
            item["answerValueSet"]
            for item, _ in iter_items(questionnaire["item"])
            if "answerValueSet" in item
        ]
        assert [f"{v['url']}|{v['version']}" for v in value_sets] == list(dict.fromkeys(referenced))
        for value_set in value_sets:
            ValueSet.model_validate(value_set)
            expansion = value_set["expansion"]
            assert expansion["timestamp"] == "2026-11-24T15:30:00Z"
            assert [c["code"] for c in expansion["contains"]] == [
                c["code"] for inc in value_set["compose"]["include"] for c in inc["concept"]
            ]
        check_draft(draft, questionnaire)
    return found


def check_draft(draft: dict[str, Any], questionnaire: dict[str, Any]) -> None:
    """The DTR QuestionnaireResponse profile, as a payer's draft."""
    QuestionnaireResponse.model_validate(draft)
    assert draft["status"] == "in-progress"
    assert draft["questionnaire"] == f"{questionnaire['url']}|{questionnaire['version']}"
    assert draft["subject"] == {"reference": "Patient/p1"}
    urls = [e["url"] for e in draft["extension"]]
    assert urls.count(QR_COVERAGE) == 1 and urls.count(INTENDED_USE) == 1
    coverage_ref = next(e for e in draft["extension"] if e["url"] == QR_COVERAGE)
    assert coverage_ref["valueReference"] == {"reference": "Coverage/cov1"}
    intended = next(e for e in draft["extension"] if e["url"] == INTENDED_USE)
    assert intended["valueCodeableConcept"]["coding"][0]["code"] == "withpa"
    for item, _ in iter_items(draft.get("item", [])):
        for answer in item.get("answer", []):
            origin = [e for e in answer["extension"] if e["url"] == INFORMATION_ORIGIN]
            assert origin == [
                {
                    "url": INFORMATION_ORIGIN,
                    "extension": [{"url": "source", "valueCode": "auto-server"}],
                }
            ]


def draft_answers(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    draft = bundle["entry"][1]["resource"]
    return {
        item["linkId"]: [
            {k: v for k, v in answer.items() if k != "extension"} for answer in item["answer"]
        ]
        for item, _ in iter_items(draft.get("item", []))
        if "answer" in item
    }


def ids(found: list[dict[str, Any]]) -> list[str]:
    return [b["entry"][0]["resource"]["id"] for b in found]


def submit(client: TestClient, response: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert reply.status_code in (200, 201), reply.text
    determination: dict[str, Any] = client.get(f"/determinations/{reply.json()['id']}").json()
    return determination


# --- by order, by canonical ------------------------------------------------------------


def test_package_by_order_only(client: TestClient, catalog: Catalog) -> None:
    reply = ask(client, order(NDC_MEKINIST), payor=MN_DHS)
    found = bundles(reply, catalog)
    assert ids(found) == ["mn-dhs-mekinist-initial", "mn-dhs-mekinist-renewal"]
    draft = found[0]["entry"][1]["resource"]
    assert {"url": QR_CONTEXT, "valueReference": {"reference": "MedicationRequest/mr1"}} in draft[
        "extension"
    ]
    assert "item" not in draft  # nothing on record for this member: nothing prefilled
    assert [i["severity"] for i in outcome_issues(reply)] == ["information"]
    # the Questionnaire references its answer lists, never inline ones
    questionnaire = found[0]["entry"][0]["resource"]
    choices = [i for i, _ in iter_items(questionnaire["item"]) if i["type"] == "choice"]
    assert choices and all("answerOption" not in i and "|" in i["answerValueSet"] for i in choices)


# --- the member's payer, by identifier ------------------------------------------------

MEKTOVI = [{"system": "http://hl7.org/fhir/sid/ndc", "code": "70255-010-02"}]


@pytest.fixture(scope="module")
def two_payers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two payers with a policy for the same drug each: WHA's
    Mektovi policy as bundled, and one of EOCCO's (a copy, its prefill left
    out: it has no translated CQL)."""
    folder = tmp_path_factory.mktemp("two-payers")
    (folder / "payers").mkdir()
    for name in ("WHA.yaml", "EOCCO.yaml"):
        shutil.copy(PAYERS / name, folder / "payers" / name)
    wha = POLICIES / "wha-mektovi.yaml"
    shutil.copy(wha, folder / wha.name)
    shutil.copytree(ROOT / "questionnaires" / "cql", folder / "questionnaires" / "cql")
    data = yaml.safe_load(wha.read_text(encoding="utf-8"))

    def without_prefill(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("ehr", None)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                without_prefill(child)

    without_prefill(data)
    data["policy"].pop("number", None)
    data["policy"]["id"] = "eocco-mektovi"
    data["policy"]["payer"] = {"name": "Eastern Oregon CCO", "identifier": "EOCCO"}
    (folder / "eocco-mektovi.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return folder


def ask_folder(folder: Path, tmp_path: Path, *parts: dict[str, Any]) -> Any:
    settings = Settings(database=str(tmp_path / "store.sqlite3"), policies=str(folder))
    app = create_app(settings, clock=lambda: AS_OF)
    app.state.service.now = lambda: NOW
    with authorize(TestClient(app)) as client:
        body = json.dumps({"resourceType": "Parameters", "parameter": list(parts)})
        return client.post(PACKAGE, content=body, headers=FHIR)


def test_each_payers_member_gets_that_payers_forms(two_payers: Path, tmp_path: Path) -> None:
    """Two payers cover the ordered drug: the Coverage's payor identifier
    chooses whose forms, whatever its display name says."""
    catalog = Catalog.from_folder(two_payers)
    mixed_up = {**WHA, "display": "Eastern Oregon Coordinated Care Organization"}
    for payor, expected in [
        (WHA, ["wha-mektovi-initial", "wha-mektovi-renewal"]),
        (mixed_up, ["wha-mektovi-initial", "wha-mektovi-renewal"]),
        (EOCCO, ["eocco-mektovi-initial", "eocco-mektovi-renewal"]),
    ]:
        reply = ask_folder(two_payers, tmp_path, coverage(payor=payor), order(MEKTOVI))
        assert ids(bundles(reply, catalog)) == expected, payor
        assert [i["severity"] for i in outcome_issues(reply)] == ["information"]


def test_payor_named_by_a_contained_organization(two_payers: Path, tmp_path: Path) -> None:
    """The payor reference points to an Organization in the Coverage: its identifiers decide."""
    cov = coverage(payor={"reference": "#payer", "display": "the plan"})
    cov["resource"]["contained"] = [
        {"resourceType": "Organization", "id": "payer", "identifier": [WHA["identifier"]]}
    ]
    reply = ask_folder(two_payers, tmp_path, cov, order(MEKTOVI))
    assert ids(bundles(reply, Catalog.from_folder(two_payers))) == [
        "wha-mektovi-initial",
        "wha-mektovi-renewal",
    ]


@pytest.mark.parametrize(
    ("payor", "said"),
    [
        # a name alone: the one that reads as WHA's gets no form either
        ({"display": "Western Health Advantage"}, "payor 'Western Health Advantage' carries no"),
        (
            {"identifier": {"system": "http://www.naic.org/company-code", "value": "00000"}},
            "payor identifier http://www.naic.org/company-code|00000 is not that of a payer of",
        ),
        # WHA's value under another system is another identifier
        (
            {"identifier": {"system": "https://www.eocco.com/fhir/sid/payer-id", "value": "WHA"}},
            "https://www.eocco.com/fhir/sid/payer-id|WHA is not that of a payer",
        ),
    ],
    ids=["display name only", "unknown identifier", "value under another system"],
)
def test_a_payer_not_named_by_identifier_gets_no_forms(
    two_payers: Path, tmp_path: Path, payor: dict[str, Any], said: str
) -> None:
    reply = ask_folder(two_payers, tmp_path, coverage(payor=payor), order(MEKTOVI))
    assert bundles(reply, Catalog.from_folder(two_payers)) == []
    (issue,) = outcome_issues(reply)
    assert issue["severity"] == "warning" and issue["expression"] == ["Coverage.payor"]
    assert said in issue["diagnostics"]
    assert "no Questionnaires are selected for the orders" in issue["diagnostics"]


def test_package_by_product_name(client: TestClient, catalog: Catalog) -> None:
    found = bundles(ask(client, order([], "Avmapki Fakzynja Co-Pack")), catalog)
    assert ids(found) == ["eocco329-initial", "eocco329-renewal"]


def test_package_by_canonical_only(client: TestClient, catalog: Catalog) -> None:
    current = catalog.current
    bare = f"{BASE}/Questionnaire/eocco329-renewal"
    found = bundles(ask(client, canonical(bare)), catalog)
    assert ids(found) == ["eocco329-renewal"]
    questionnaire = found[0]["entry"][0]["resource"]
    assert f"{bare}|{questionnaire['version']}" in current
    # an older released version, served as released (a canonical's content
    # never changes), with a warning that its logic Library is not packaged
    reply = ask(client, canonical(f"{bare}|1.1.0-r2"))
    older = bundles(reply, catalog)
    assert older[0]["entry"][0]["resource"]["version"] == "1.1.0-r2"
    (warning,) = [i for i in outcome_issues(reply) if i["severity"] == "warning"]
    assert "eocco329-renewal-logic" in warning["diagnostics"]
    assert questionnaire["version"] in warning["diagnostics"]
    # asked twice, returned once
    assert len(bundles(ask(client, canonical(bare), canonical(bare)), catalog)) == 1


def test_the_terminology_server_is_this_service(client: TestClient, catalog: Catalog) -> None:
    """A form with answer lists names where they are expanded, under both
    urls renderers read: as released, the payer's base; as served, this
    service's public base, whose ValueSets anyone may expand."""
    servers = (
        "http://hl7.org/fhir/StructureDefinition/preferredTerminologyServer",
        "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-preferredTerminologyServer",
    )
    released = json.loads(
        (ROOT / "questionnaires" / "Questionnaire-eocco329-initial.json").read_text("utf-8")
    )
    named = {e["url"]: e["valueUrl"] for e in released["extension"] if e["url"] in servers}
    assert named == dict.fromkeys(servers, BASE)
    found = bundles(ask(client, canonical(f"{BASE}/Questionnaire/eocco329-initial")), catalog)
    served = found[0]["entry"][0]["resource"]
    named = {e["url"]: e["valueUrl"] for e in served["extension"] if e["url"] in servers}
    assert named == dict.fromkeys(servers, "http://127.0.0.1:8080")
    read = client.get("/Questionnaire/eocco329-initial").json()
    assert {e["url"]: e["valueUrl"] for e in read["extension"] if e["url"] in servers} == named
    # and on each coded item (LHC-Forms keeps an item's through a merge of
    # prefilled answers, and forgets the form's)
    for form, base in ((released, BASE), (served, "http://127.0.0.1:8080")):
        for item, _ in iter_items(form["item"]):
            on_item = [e["valueUrl"] for e in item.get("extension", []) if e["url"] == servers[1]]
            assert on_item == ([base] if "answerValueSet" in item else []), item["linkId"]
    # what LHC-Forms then asks for each answer list, without a token
    item = next(i for i, _ in iter_items(served["item"]) if "answerValueSet" in i)
    anonymous = TestClient(client.app)
    expanded = anonymous.get("/ValueSet/$expand", params={"url": item["answerValueSet"]})
    assert expanded.status_code == 200, expanded.text
    assert expanded.json()["expansion"]["contains"]


def test_one_version_of_a_questionnaire_per_package(client: TestClient, catalog: Catalog) -> None:
    """DTR oper-7: an order does not bring a second version of a Questionnaire
    already asked for by canonical."""
    older = f"{BASE}/Questionnaire/eocco329-initial|1.1.0-r2"
    found = bundles(ask(client, canonical(older), order([], "Avmapki Fakzynja Co-Pack")), catalog)
    versions = {
        b["entry"][0]["resource"]["id"]: b["entry"][0]["resource"]["version"] for b in found
    }
    assert versions["eocco329-initial"] == "1.1.0-r2"
    assert set(versions) == {"eocco329-initial", "eocco329-renewal"}


def test_unknown_canonical_and_unmatched_order_are_warnings(
    client: TestClient, catalog: Catalog
) -> None:
    reply = ask(
        client,
        canonical(f"{BASE}/Questionnaire/nope|9"),
        order([], "amoxicillin 500 mg"),
        canonical(f"{BASE}/Questionnaire/eocco329-initial"),
    )
    assert ids(bundles(reply, catalog)) == ["eocco329-initial"]
    warnings = [i["diagnostics"] for i in outcome_issues(reply) if i["severity"] == "warning"]
    assert any(f"{BASE}/Questionnaire/nope|9" in w for w in warnings)
    assert any("amoxicillin 500 mg" in w and "no policy of this payer" in w for w in warnings)


def test_changedsince(client: TestClient, catalog: Catalog) -> None:
    bare = canonical(f"{BASE}/Questionnaire/eocco329-initial")
    since = {"name": "changedsince", "valueInstant": "2020-01-01T00:00:00Z"}
    assert len(bundles(ask(client, bare, since), catalog)) == 1
    later = {"name": "changedsince", "valueInstant": "2099-01-01T00:00:00+00:00"}
    reply = ask(client, bare, later)
    assert bundles(reply, catalog) == []
    assert "unchanged since" in outcome_issues(reply)[0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ({"resourceType": "Parameters"}, "Parameters.parameter must list the inputs"),
        ({"resourceType": "Bundle", "type": "collection"}, "not 'Bundle'"),
        ({"resourceType": "Parameters", "parameter": [canonical("x")]}, "exactly one 'coverage'"),
        ({"resourceType": "Parameters", "parameter": [coverage(), coverage(), canonical("x")]},
         "exactly one 'coverage'"),
        ({"resourceType": "Parameters", "parameter": [coverage()]}, "(dtr-1)"),
        ({"resourceType": "Parameters", "parameter": [
            {"name": "coverage", "resource": {"resourceType": "Patient"}}, canonical("x")]},
         "must be a Coverage"),
        ({"resourceType": "Parameters", "parameter": [
            {"name": "coverage", "resource": {"resourceType": "Coverage", "status": 7}},
            canonical("x")]},
         "is not valid FHIR"),
        ({"resourceType": "Parameters", "parameter": [
            coverage(), {"name": "questionnaire", "valueString": "x"}]},
         "takes a non-empty valueCanonical"),
        ({"resourceType": "Parameters", "parameter": [
            coverage(), canonical("x"), {"name": "changedsince", "valueInstant": "2026-01-01"}]},
         "needs a time of day and a time zone"),
        ({"resourceType": "Parameters", "parameter": [
            coverage(), {"name": "order", "resource": {"resourceType": "Claim"}}]},
         "must be a"),
        ({"resourceType": "Parameters", "parameter": ["coverage"]}, "an object with a name"),
    ],
    ids=[
        "bare Parameters", "a Bundle", "no coverage", "two coverages", "coverage only",
        "coverage not a Coverage", "coverage not valid", "questionnaire not canonical",
        "changedsince without time", "order of another type", "parameter not an object",
    ],
)  # fmt: skip
def test_malformed_parameters_are_400(client: TestClient, body: Any, expect: str) -> None:
    assert expect in refused(client.post(PACKAGE, content=json.dumps(body), headers=FHIR))


# --- context: a pended request completed, not started over ------------------------------


def test_context_reopens_a_pended_request(client: TestClient, catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    complete = base_answers("eocco329", "initial_met")
    partial = {
        k: v for k, v in complete.items() if k not in ("kras_mutation", "prescriber_oncologist")
    }
    sent = fill(package, partial, subject="Patient/p1", status="completed")
    pended = submit(client, sent)
    assert pended["outcome"] == "pended"
    # the context id is the coverage-assertion-id on the stored response
    stored = client.get(f"/QuestionnaireResponse/{pended['id']}").json()
    info = next(e for e in stored["extension"] if e["url"].endswith("ext-coverage-information"))
    sub = {e["url"]: e for e in info["extension"]}
    assert sub["coverage-assertion-id"]["valueString"] == pended["context"] == pended["id"]
    assert sub["questionnaire"]["valueCanonical"] == sent["questionnaire"]

    reply = ask(client, context(pended["context"]))
    (bundle,) = bundles(reply, catalog)
    assert bundle["entry"][0]["resource"]["id"] == "eocco329-initial"
    earlier = draft_answers(bundle)
    expected = {
        item["linkId"]: item["answer"] for item, _ in iter_items(sent["item"]) if "answer" in item
    }
    assert earlier == expected
    # the prescriber completes the draft and submits it: approved
    draft = bundle["entry"][1]["resource"]
    completed = fill(package, complete, subject="Patient/p1")
    completed["extension"] = draft["extension"]
    decided = submit(client, completed)
    assert decided["outcome"] == "approved"


def test_unknown_context_is_a_warning(client: TestClient, catalog: Catalog) -> None:
    reply = ask(client, context("no-such-request"))
    assert bundles(reply, catalog) == []
    (issue,) = outcome_issues(reply)
    assert issue["severity"] == "warning" and "no-such-request" in issue["diagnostics"]


def test_context_of_another_member_reveals_nothing(client: TestClient, catalog: Catalog) -> None:
    package = package_for(catalog, "eocco329", "initial")
    pended = submit(client, fill(package, {"birth_date": "1970-01-01"}, subject="Patient/p1"))
    reply = ask(client, context(pended["id"]), member="Patient/intruder")
    assert bundles(reply, catalog) == []
    assert "not the Coverage's beneficiary's" in outcome_issues(reply)[0]["diagnostics"]
    assert "1970-01-01" not in reply.text


# --- prefill from the payer's records ------------------------------------------------------


@pytest.mark.cases("package_prefill.yaml")
def test_prefill_from_the_payers_records(
    catalog: Catalog, tmp_path: Path, case: dict[str, Any]
) -> None:
    if case.get("folder"):
        catalog = folder_catalog(case["folder"])
    client = make_client(catalog, tmp_path)
    for position, earlier in enumerate(case["history"]):
        policy = earlier.get("policy", case["policy"])
        package = package_for(catalog, policy, earlier["request"], case.get("drug"))
        answers = {**base_answers(policy, earlier["base"]), **earlier.get("set", {})}
        response = fill(
            package,
            answers,
            subject=earlier.get("member", "Patient/p1"),
            response_id=f"history-{position}",
        )
        assert submit(client, response)["outcome"] == earlier["expect"]
    package = package_for(catalog, case["policy"], case["package"], case.get("drug"))
    questionnaire = package.questionnaire
    reply = ask(client, canonical(f"{questionnaire['url']}|{questionnaire['version']}"))
    (bundle,) = bundles(reply, catalog)
    by_name = {package.link_of[name]: name for name in package.link_of}
    found = {by_name[link]: answers[0] for link, answers in draft_answers(bundle).items()}
    expected = {
        name: {"valueBoolean": value} if isinstance(value, bool) else {"valueInteger": value}
        for name, value in case["expect"].items()
    }
    assert found == expected


# --- ValueSets -------------------------------------------------------------------------------


def test_value_set_read_search_and_expand(client: TestClient, catalog: Catalog) -> None:
    questionnaire = client.get("/Questionnaire/eocco329-initial").json()
    reference = next(
        i["answerValueSet"] for i, _ in iter_items(questionnaire["item"]) if "answerValueSet" in i
    )
    url, version = reference.split("|")
    vid = url.rsplit("/", 1)[1]
    read = client.get(f"/ValueSet/{vid}").json()
    ValueSet.model_validate(read)
    assert (read["url"], read["version"]) == (url, version) and "expansion" not in read
    every = client.get("/ValueSet", params={"url": url}).json()
    assert reference in [f"{url}|{e['resource']['version']}" for e in every["entry"]]
    for params in ({"url": reference}, {"url": url, "version": version}):
        found = client.get("/ValueSet", params=params).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == vid
    # GET with url|version (as LHC-Forms asks, with _format), with valueSetVersion, and POST
    expansions = [
        client.get("/ValueSet/$expand", params={"url": reference, "_format": "json"}),
        client.get("/ValueSet/$expand", params={"url": url, "valueSetVersion": version}),
        client.post(
            "/ValueSet/$expand",
            content=json.dumps(
                {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "url", "valueUri": reference}],
                }
            ),
            headers=FHIR,
        ),
        client.get(f"/ValueSet/{vid}/$expand"),
    ]
    for reply in expansions:
        assert reply.status_code == 200, reply.text
        ValueSet.model_validate(reply.json())
        expansion = reply.json()["expansion"]
        assert expansion["timestamp"] == "2026-11-24T15:30:00Z"
        assert expansion["total"] == len(expansion["contains"]) > 0
    assert "no ValueSet" in refused(
        client.get("/ValueSet/$expand", params={"url": f"{url}|0.0.0"}), 404
    )
    assert "needs a 'url'" in refused(client.get("/ValueSet/$expand"))
    refused(client.get("/ValueSet/nope"), 404)


def test_every_current_answer_list_is_published(client: TestClient, catalog: Catalog) -> None:
    for package in catalog.current.values():
        for item, _ in iter_items(package.questionnaire["item"]):
            if item["type"] == "choice":
                reply = client.get("/ValueSet/$expand", params={"url": item["answerValueSet"]})
                codes = {(c["system"], c["code"]) for c in reply.json()["expansion"]["contains"]}
                assert codes == package.items[item["linkId"]].options


# --- $log-questionnaire-errors -------------------------------------------------------------


def test_log_questionnaire_errors(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = f"{BASE}/Questionnaire/eocco329-initial|1.2.0-r3"
    report: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "questionnaire", "valueCanonical": reference},
            {
                "name": "operationOutcome",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "processing",
                            "diagnostics": "item I.D failed",
                        }
                    ],
                },
            },
        ],
    }
    reply = client.post(
        "/Questionnaire/$log-questionnaire-errors", content=json.dumps(report), headers=FHIR
    )
    assert reply.status_code == 200, reply.text
    OperationOutcome.model_validate(reply.json())
    # the client reports; the payer's pharmacist reads the reports, no client
    assert client.get("/questionnaire-errors").status_code == 403
    staff = pharmacist(client)
    listed = staff.get("/questionnaire-errors").json()
    assert listed["total"] == 1
    assert listed["reports"][0]["questionnaire"] == reference
    assert listed["reports"][0]["outcome"]["issue"][0]["diagnostics"] == "item I.D failed"
    by_url = staff.get(
        "/questionnaire-errors", params={"questionnaire": f"{BASE}/Questionnaire/eocco329-initial"}
    ).json()
    assert by_url["total"] == 1
    other = staff.get(
        "/questionnaire-errors", params={"questionnaire": f"{BASE}/Questionnaire/eocco329-renewal"}
    ).json()
    assert other["total"] == 0
    # several Questionnaires and outcomes in one report: one record each, all issues
    two = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "questionnaire", "valueCanonical": f"{BASE}/Questionnaire/eocco329-renewal"},
            {
                "name": "questionnaire",
                "valueCanonical": "https://elsewhere.example/Questionnaire/q",
            },
            report["parameter"][1],
            {"name": "OperationOutcome", "resource": report["parameter"][1]["resource"]},
        ],
    }
    reply = client.post(
        "/Questionnaire/$log-questionnaire-errors", content=json.dumps(two), headers=FHIR
    )
    assert reply.status_code == 200, reply.text
    assert [i["severity"] for i in reply.json()["issue"]] == [
        "information",
        "information",
        "warning",
    ]
    renewal = staff.get(
        "/questionnaire-errors", params={"questionnaire": f"{BASE}/Questionnaire/eocco329-renewal"}
    ).json()["reports"]
    assert len(renewal) == 1 and len(renewal[0]["outcome"]["issue"]) == 2
    # the payer lists them from the command line too
    database = str(tmp_path / "store.sqlite3")
    assert main(["errors", "--db", database]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    initial = f"{BASE}/Questionnaire/eocco329-initial"
    assert main(["errors", "--db", database, "--questionnaire", initial]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["issues"] == ["error: item I.D failed"]
    bad = {"resourceType": "Parameters", "parameter": [report["parameter"][0]]}
    assert "operationOutcome" in refused(
        client.post(
            "/Questionnaire/$log-questionnaire-errors", content=json.dumps(bad), headers=FHIR
        )
    )
