"""The crash classes and lax inputs found by fuzzing, each fixed at its root:
an exact JSON type for every answer, FHIR dates of the calendar, no nulls,
bounded nesting, huge numbers, malformed Parameters, attachments, a trailing
slash, and long and/or chains. Each is a 4xx OperationOutcome naming the
problem — or, for the chains, a policy that builds and scores."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from fhir.resources.R4B.operationoutcome import OperationOutcome

from policies.loader import parse_policy
from qpackage.catalog import Catalog, receive, score_json
from scoring import InvalidInput, score
from scoring.fhir_outputs import claim_response
from scoring.fill import fill
from scoring.response import unpack_data_urls
from service.app import create_app
from service.settings import Settings
from tests.support.callers import authorize
from tests.support.cases import AS_OF, base_answers, package_for

FHIR = {"Content-Type": "application/fhir+json"}


def approved(catalog: Catalog) -> dict[str, Any]:
    package = package_for(catalog, "eocco329", "initial")
    response = fill(package, base_answers("eocco329", "initial_met"))
    assert score_json(catalog, response, AS_OF).outcome == "approved"
    return response


def answer_of(response: dict[str, Any], link_id: str) -> dict[str, Any]:
    stack = list(response["item"])
    while stack:
        item = stack.pop()
        if item["linkId"] == link_id:
            return item["answer"][0]  # type: ignore[no-any-return]
        stack.extend(item.get("item", []))
    raise KeyError(link_id)


def refused(catalog: Catalog, body: Any, status: int = 422) -> str:
    with pytest.raises(InvalidInput) as caught:
        score_json(catalog, body, AS_OF)
    assert caught.value.status == status
    OperationOutcome.model_validate(caught.value.outcome())
    return " | ".join(issue.diagnostics for issue in caught.value.issues)


@pytest.mark.parametrize(
    ("link_id", "key", "value", "said"),
    [
        ("I.C.combination_therapy", "valueBoolean", 0, "must be true or false, not 0"),
        ("I.C.combination_therapy", "valueBoolean", 0.0, "must be true or false"),
        ("I.C.combination_therapy", "valueBoolean", "false", "must be true or false, not 'false'"),
        ("I.C.combination_therapy", "valueBoolean", "no", "must be true or false"),
        ("QL.requested_quantity", "valueInteger", "66", "must be a JSON integer, not '66'"),
        ("QL.requested_quantity", "valueInteger", 66.0, "must be a JSON integer"),
        ("QL.requested_quantity", "valueInteger", True, "must be a JSON integer"),
        ("QL.requested_quantity", "valueInteger", 2**40, "2147483647"),
        ("I.A.birth_date", "valueDate", "0999-01-01", "outside the dates this service takes"),
        ("I.A.birth_date", "valueDate", "9999-12-31", "outside the dates this service takes"),
        ("I.A.birth_date", "valueDate", "2008-02-30", "'2008-02-30' is not a day of the calendar"),
        ("I.A.birth_date", "valueDate", "12/04/1968", "valueDate"),
        ("I.A.birth_date", "valueDate", 1968, "valueDate"),
    ],
)
def test_an_answer_takes_exactly_its_json_type(
    catalog: Catalog, link_id: str, key: str, value: Any, said: str
) -> None:
    """Lax coercion once scored `0` as "no" (and approved): now a 422 naming the item."""
    response = approved(catalog)
    answer_of(response, link_id)[key] = value
    message = refused(catalog, json.dumps(response))
    assert link_id in message and said in message


@pytest.mark.parametrize("place", ["answer", "item", "value", "subject", "coding-code"])
def test_null_is_refused_where_a_value_or_list_belongs(catalog: Catalog, place: str) -> None:
    response = approved(catalog)
    group = response["item"][1]
    if place == "answer":
        group["item"][0]["item"][0]["answer"] = None
    elif place == "item":
        group["item"] = None
    elif place == "value":
        answer_of(response, "I.A.birth_date")["valueDate"] = None
    elif place == "subject":
        response["subject"] = None
    else:
        answer_of(response, "I.D.diagnosis")["valueCoding"]["code"] = None
    assert "is null" in refused(catalog, json.dumps(response))


def test_deep_json_and_huge_numbers_are_400(catalog: Catalog) -> None:
    assert "nested too deeply" in refused(catalog, "[" * 5000 + "]" * 5000, 400)
    assert "cannot be read" in refused(catalog, '{"n": ' + "9" * 5000 + "}", 400)


def test_items_nested_past_the_limit_are_refused(catalog: Catalog) -> None:
    response = approved(catalog)
    deep: dict[str, Any] = {"linkId": "x"}
    for _ in range(200):
        deep = {"linkId": "x", "item": [deep]}
    response["item"].append(deep)
    # more items than the form has: refused before anything walks them
    assert "more items than its Questionnaire" in refused(catalog, json.dumps(response))
    # JSON nested past the limit elsewhere (extensions)
    response = approved(catalog)
    nested: dict[str, Any] = {"url": "http://example.org/x", "valueString": "x"}
    for _ in range(200):
        nested = {"url": "http://example.org/x", "extension": [nested]}
    response["extension"] = [nested]
    assert "nests more than" in refused(catalog, json.dumps(response))


def test_partial_dates_are_dates_but_decide_only_when_certain(catalog: Catalog) -> None:
    response = approved(catalog)
    answer_of(response, "I.A.birth_date")["valueDate"] = "2008"
    assert score_json(catalog, response, AS_OF).outcome == "pended"
    answer_of(response, "I.A.birth_date")["valueDate"] = "1968-04"
    assert score_json(catalog, response, AS_OF).outcome == "approved"


def test_attachments_carry_something_valid_and_not_too_big(catalog: Catalog) -> None:
    response = approved(catalog)
    report = answer_of(response, "I.D.2.documentation")["valueAttachment"]
    report.pop("data")
    assert "neither data nor a url" in refused(catalog, json.dumps(response))
    report["data"] = "not base64!"
    assert "I.D.2.documentation" in refused(catalog, json.dumps(response))
    assert "base64" in refused(catalog, json.dumps(response))
    report["data"] = base64.b64encode(b"%PDF" + b"0" * (10 * 1024 * 1024)).decode()
    assert "the limit is 10 MB" in refused(catalog, json.dumps(response))
    report["data"] = base64.b64encode(b"%PDF" + b"0" * (9 * 1024 * 1024)).decode()
    assert score_json(catalog, json.dumps(response), AS_OF).outcome == "approved"


def test_a_file_sent_as_a_data_url_is_taken_as_its_bytes_and_type(catalog: Catalog) -> None:
    """CSIRO Smart Forms puts a file in Attachment.data as a data URL
    (``data:application/pdf;base64,…``): it approves like the same bytes sent
    as FHIR has them, is kept that way, and the determination says it was
    normalised; a data URL of another type than the contentType given, one
    that is not base64, or whose payload is not, is refused naming the item."""
    response = approved(catalog)
    report = answer_of(response, "I.D.2.documentation")["valueAttachment"]
    payload = base64.b64encode(b"%PDF-1.4\n").decode()
    report.pop("contentType")
    report["data"] = f"data:application/pdf;base64,{payload}"
    received = receive(catalog, response, AS_OF)
    assert received.determination.outcome == "approved"
    (note,) = received.determination.normalised
    assert "I.D.2.documentation" in note and "data URL" in note
    assert received.determination.to_json()["normalised"] == [note]
    notes = [n["text"] for n in claim_response(received.determination)["processNote"]]
    assert note in notes  # the ClaimResponse $evaluate returns says it too
    kept = answer_of(received.response, "I.D.2.documentation")["valueAttachment"]
    assert (kept["data"], kept["contentType"]) == (payload, "application/pdf")
    assert report["data"].startswith("data:")  # the caller's copy is left as it was
    report["contentType"] = "application/PDF"  # the same type given: kept
    kept = answer_of(receive(catalog, response, AS_OF).response, "I.D.2.documentation")
    assert kept["valueAttachment"]["contentType"] == "application/PDF"
    report["contentType"] = "image/png"  # another type: which one is it?
    problem = refused(catalog, json.dumps(response))
    assert "I.D.2.documentation" in problem and "application/pdf" in problem
    assert "image/png" in problem
    report.pop("contentType")
    report["data"] = "data:text/plain,KRAS%20G12D"
    assert "a data URL that is not base64" in refused(catalog, json.dumps(response))
    report["data"] = "data:application/pdf;base64,not base64!"
    problem = refused(catalog, json.dumps(response))
    assert "I.D.2.documentation" in problem and "base64" in problem.lower()
    plain = approved(catalog)  # no data URL: nothing rewritten, nothing copied
    assert unpack_data_urls(plain) == (plain, []) and unpack_data_urls(plain)[0] is plain


@pytest.fixture()
def client(tmp_path: Path, catalog: Catalog) -> TestClient:
    app = create_app(Settings(database=str(tmp_path / "s.sqlite3")), catalog=catalog)
    return authorize(TestClient(app))


def test_a_report_of_a_few_mb_is_accepted_over_http(client: TestClient, catalog: Catalog) -> None:
    """A response carrying an 8 MB report (about 11 MB of base64) is scored;
    every other body keeps the tight limit."""
    response = approved(catalog)
    report = answer_of(response, "I.D.2.documentation")["valueAttachment"]
    report["data"] = base64.b64encode(b"%PDF" + b"0" * (8 * 1024 * 1024)).decode()
    reply = client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert reply.status_code == 201, reply.text[:300]
    big = {
        "resourceType": "Parameters",
        "parameter": [{"name": "x", "valueString": "x" * 2_000_000}],
    }
    reply = client.post(
        "/Questionnaire/$questionnaire-package", content=json.dumps(big), headers=FHIR
    )
    assert reply.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        "null",
        '"a string"',
        "[1, 2]",
        '{"resourceType": "Parameters", "parameter": "x"}',
        '{"resourceType": "Parameters", "parameter": [null, "x"]}',
        '{"resourceType": "Parameters", "parameter": [{"name": "response", "resource": "x"}]}',
        '{"resourceType": "Parameters"}',
    ],
)
def test_a_malformed_body_or_parameters_wrapper_is_400(client: TestClient, body: str) -> None:
    reply = client.post("/QuestionnaireResponse/$evaluate", content=body, headers=FHIR)
    assert reply.status_code == 400, reply.text
    OperationOutcome.model_validate(reply.json())


def test_a_trailing_slash_is_the_same_operation(client: TestClient, catalog: Catalog) -> None:
    reply = client.post(
        "/QuestionnaireResponse/$evaluate/", content=json.dumps(approved(catalog)), headers=FHIR
    )
    assert reply.status_code == 201, reply.text
    assert client.get("/metadata/").status_code == 200


def test_a_criterion_with_hundreds_of_children_builds_and_scores() -> None:
    """fhirpathpy recurses once per term of an and/or chain: 300 children are
    joined as a balanced tree, so the policy builds, scores and cites."""
    count = 300
    children = [
        {
            "id": f"C.{n}",
            "text": f"Condition {n}",
            "questions": [{"name": f"q{n}", "type": "boolean", "text": f"Condition {n}?"}],
            "met": f"%q{n}",
        }
        for n in range(1, count + 1)
    ]
    data = {
        "policy": {
            "id": "wide", "title": "Wide", "type": "PA", "version": "1.0.0",
            "payer": {"name": "Fixture", "identifier": "F"},
            "canonical_base": "https://pa-dtr.example.org/fhir", "source": "test",
        },
        "drugs": [{"name": "Widenib"}],
        "authorization": {"initial": {"months": 6}, "renewal": {"months": 6}},
        "initial": {"title": "Initial", "criteria": [{"id": "C", "text": "All", "children": children}]},
        "renewal": {"title": "Renewal", "criteria": [{"id": "R", "text": "All", "include": "initial"}]},
    }  # fmt: skip
    catalog = Catalog([parse_policy(yaml.safe_dump(data), "wide.yaml")])
    package = next(p for p in catalog.current.values() if p.kind == "initial")
    answers = {f"q{n}": True for n in range(1, count + 1)}
    assert score(package, fill(package, answers), AS_OF).outcome == "approved"
    answers["q150"] = False
    denied = score(package, fill(package, answers), AS_OF)
    assert denied.outcome == "denied" and denied.unmet == ["C.150"]


QR = '"resourceType": "QuestionnaireResponse", "status": "completed"'


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        ("{" + QR + ', "_status": "null"}', 422, "_status must be a JSON object"),
        (
            "{" + QR + ', "extension": [{"url": "http://x", "valueUrl": 1}]}',
            422,
            "extension[0].valueUrl: must be a JSON string (a url), not 1",
        ),
        (
            "{" + QR + ', "item": [{"linkId": "a", "answer": [{"valueAttachment": {"url": 0}}]}]}',
            422,
            "item a: QuestionnaireResponse.item[0].answer[0].valueAttachment.url: must be a JSON"
            " string (a url), not 0",
        ),
        (
            "{" + QR + ', "subject": {"resourceType": "\\ud800"}}',
            422,
            "Reference has no element 'resourceType'",
        ),
        ("{" + QR + ', "subject": {"reference": "\\ud800"}}', 422, "not valid Unicode"),
        ("{" + QR + ', "subject": "{\\"reference\\": \\"Patient/x\\"}"}', 422, "JSON object"),
        (b'{"resourceType": "\xed\xa0\x80"}', 400, "not UTF-8"),
    ],
    ids=[
        "primitive-extension",
        "url-number",
        "attachment-url",
        "surrogate-unknown-element",
        "surrogate",
        "string-object",
        "bytes",
    ],
)
def test_what_the_fhir_models_would_coerce_or_crash_on(
    catalog: Catalog, body: str | bytes, status: int, said: str
) -> None:
    """Found by the fuzz campaign: each reached the FHIR models, which either
    crashed (a 500) or read a JSON string as an object."""
    assert said in refused(catalog, body, status)


def test_a_decimal_too_large_for_a_float_is_refused(catalog: Catalog) -> None:
    package = package_for(catalog, "wha-mektovi", "initial")
    response = fill(package, {"requested_quantity": 168, "requested_daily_dose": 90})
    answer_of(response, package.link_of["requested_daily_dose"])["valueDecimal"] = 10**400
    assert "too large" in refused(catalog, json.dumps(response))
