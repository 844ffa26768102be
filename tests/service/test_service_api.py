"""The HTTP API in process: every endpoint, every error status, the audit store."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from qpackage.catalog import Catalog
from review.request import BIRTH_DATE_EXTENSION, PRIORITY_EXTENSION
from scoring.fill import fill
from service.app import create_app
from service.settings import Settings
from service.store import SQLiteStore
from tests.support.callers import add_user, authorize, sign_in
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.dtr_requests import FHIR

APPROVABLE = base_answers("eocco329", "initial_met")


@pytest.fixture()
def client(catalog: Catalog, tmp_path: Path) -> TestClient:
    settings = Settings(
        database=str(tmp_path / "store.sqlite3"), max_body=200_000, max_response_body=500_000
    )
    # the scorer's own outcomes: no pharmacist review (tests/review/test_review.py)
    app = create_app(settings, catalog=catalog, clock=lambda: AS_OF, payers={})
    return authorize(TestClient(app))


def response(catalog: Catalog, answers: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return fill(package_for(catalog, "eocco329", "initial"), answers or APPROVABLE, **kw)


def post(
    client: TestClient,
    body: Any,
    path: str = "/QuestionnaireResponse/$evaluate",
    headers: Any = FHIR,
):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, content=content, headers=headers)


def outcome_of(reply: Any, status: int) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/fhir+json")
    OperationOutcome.model_validate(reply.json())
    assert "Traceback" not in reply.text
    return " | ".join(i["diagnostics"] for i in reply.json()["issue"])


# --- conformance and reads ----------------------------------------------------------


def test_metadata_lists_the_api(client: TestClient) -> None:
    reply = client.get("/metadata")
    assert reply.status_code == 200
    capability = CapabilityStatement.model_validate(reply.json())
    (rest,) = capability.rest or []
    resources = {r.type: r for r in rest.resource or []}
    assert {"Questionnaire", "Library", "QuestionnaireResponse", "ClaimResponse"} <= set(resources)
    assert [o.name for o in resources["QuestionnaireResponse"].operation or []] == ["evaluate"]
    assert [o.name for o in resources["Questionnaire"].operation or []] == [
        "questionnaire-package",
        "next-question",
        "log-questionnaire-errors",
    ]
    assert [o.name for o in resources["ValueSet"].operation or []] == ["expand"]
    definition = client.get("/OperationDefinition/evaluate-response")
    assert OperationDefinition.model_validate(definition.json()).code == "evaluate"


def test_questionnaire_search_and_read(client: TestClient) -> None:
    everything = client.get("/Questionnaire").json()
    Bundle.model_validate(everything)
    catalog = client.app.state.catalog  # type: ignore[attr-defined]
    # every released version, the current ones and those kept for older records
    # each with its adaptive form
    assert everything["type"] == "searchset" and everything["total"] == 2 * len(catalog.packages)
    url = "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-renewal"
    versions = [c for c in catalog.packages if c.startswith(f"{url}|")]
    assert "1.0.0-r1" in [c.split("|")[1] for c in versions]
    assert client.get("/Questionnaire", params={"url": url}).json()["total"] == len(versions)
    assert (
        client.get("/Questionnaire", params={"url": url, "version": "1.0.0-r1"}).json()["total"]
        == 1
    )
    assert client.get("/Questionnaire", params={"url": f"{url}|1.0.0-r1"}).json()["total"] == 1
    assert client.get("/Questionnaire", params={"url": url, "version": "9"}).json()["total"] == 0
    assert client.get("/Questionnaire/eocco329-renewal").json()["url"] == url
    assert "Questionnaire/nope is not known" in outcome_of(client.get("/Questionnaire/nope"), 404)


def test_library_read(client: TestClient) -> None:
    logic = client.get("/Library/eocco329-initial-logic").json()
    assert logic["content"][0]["contentType"] == "text/fhirpath"
    outcome_of(client.get("/Library/nope"), 404)


# --- $evaluate -----------------------------------------------------------------------


def test_evaluate_scores_stores_and_returns_claim_response(
    client: TestClient, catalog: Catalog
) -> None:
    sent = response(catalog, subject="Patient/123")
    reply = post(client, sent)
    assert reply.status_code == 201, reply.text
    claim = reply.json()
    ClaimResponse.model_validate(claim)
    assert claim["patient"] == {"reference": "Patient/123"}
    assert claim["preAuthPeriod"] == {"start": "2026-11-24", "end": "2027-05-23"}
    review = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0][
        "valueCodeableConcept"
    ]
    assert review["coding"][0]["code"] == "A1"
    assert reply.headers["location"].endswith(f"/ClaimResponse/{claim['id']}")
    assert client.get(f"/ClaimResponse/{claim['id']}").json() == claim
    determination = client.get(f"/determinations/{claim['id']}").json()
    assert determination["outcome"] == "approved" and determination["authorization"]["months"] == 6
    assert determination["questionnaire"] == sent["questionnaire"]
    notice = client.get(f"/determinations/{claim['id']}/notice")
    assert notice.headers["content-type"].startswith("text/html") and "Approved" in notice.text
    assert (
        "May 23, 2027"
        in client.get(f"/determinations/{claim['id']}/notice", params={"format": "text"}).text
    )
    stored = client.get(f"/QuestionnaireResponse/{claim['id']}").json()
    QuestionnaireResponse.model_validate(stored)
    info = next(e for e in stored["extension"] if e["url"].endswith("ext-coverage-information"))
    covered = {e["url"]: e.get("valueCode") for e in info["extension"]}
    assert covered["covered"] == "covered" and covered["pa-needed"] == "satisfied"


def test_denial_lists_every_section(client: TestClient, catalog: Catalog) -> None:
    answers = {**APPROVABLE, "kras_mutation": False, "requested_quantity": 70}
    claim = post(client, response(catalog, answers)).json()
    review = claim["item"][0]["adjudication"][0]["extension"][0]["extension"][0][
        "valueCodeableConcept"
    ]
    assert review["coding"][0]["code"] == "A3"
    notes = [n["text"] for n in claim["processNote"]]
    assert any(n.startswith("Not met: QL") for n in notes) and any(
        n.startswith("Not met: I.D.2") for n in notes
    )
    assert client.get(f"/determinations/{claim['id']}").json()["sections"]["unmet"] == [
        "QL",
        "I.D.2",
    ]


def test_pended_response_is_kept_and_completed_later(client: TestClient, catalog: Catalog) -> None:
    partial = response(catalog, {"requested_quantity": 66}, response_id="qr-1")
    first = post(client, partial)
    assert first.status_code == 201 and first.json()["outcome"] == "queued"
    again = post(client, partial)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    completed = post(client, response(catalog, response_id="qr-1"))
    assert completed.status_code == 201 and completed.json()["id"] != first.json()["id"]
    store = client.app.state.store  # type: ignore[attr-defined]
    assert store.count() == 2
    assert client.get(f"/determinations/{first.json()['id']}").json()["outcome"] == "pended"


def test_evaluate_accepts_parameters(client: TestClient, catalog: Catalog) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "response", "resource": response(catalog)}],
    }
    assert post(client, body).status_code == 201


def test_evaluate_accepts_what_lhc_forms_exports(client: TestClient, catalog: Catalog) -> None:
    exported = response(catalog, subject=None)
    exported["meta"] = {"profile": ["http://hl7.org/fhir/4.0/StructureDefinition/QuestionnaireResponse"],
                        "tag": [{"code": "lformsVersion: 40.1.3"}]}  # fmt: skip
    exported["authored"] = "2026-11-24T21:44:44.697Z"
    reply = post(client, exported)
    assert reply.status_code == 201
    assert reply.json()["patient"]["display"] == "patient not identified in the response"


# --- errors ----------------------------------------------------------------------------


def test_malformed_json_is_400(client: TestClient) -> None:
    assert "malformed JSON" in outcome_of(post(client, '{"resourceType": '), 400)


def test_wrong_content_type_is_415(client: TestClient, catalog: Catalog) -> None:
    reply = post(client, response(catalog), headers={"content-type": "text/plain"})
    assert "text/plain" in outcome_of(reply, 415)


def test_oversize_body_is_413(client: TestClient, catalog: Catalog) -> None:
    """A response may carry attachments (its own, larger limit); other bodies
    keep the tight one."""
    big = response(catalog)
    big["text"] = {"status": "generated", "div": "<div>" + "x" * 600_000 + "</div>"}
    assert "exceeds the limit of 500000 bytes" in outcome_of(post(client, big), 413)
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "x", "valueString": "x" * 300_000}],
    }
    reply = client.post(
        "/Questionnaire/$questionnaire-package",
        content=json.dumps(parameters),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert "exceeds the limit of 200000 bytes" in outcome_of(reply, 413)


def test_response_that_does_not_fit_is_422(client: TestClient, catalog: Catalog) -> None:
    wrong = response(catalog)
    wrong["item"][0]["item"][0]["answer"] = [{"valueString": "sixty-six"}]
    assert "expected valueInteger, got valueString" in outcome_of(post(client, wrong), 422)
    other = response(catalog)
    other["questionnaire"] = "https://elsewhere.example/Questionnaire/x|1"
    assert "no Questionnaire" in outcome_of(post(client, other), 422)
    assert client.app.state.store.count() == 0  # type: ignore[attr-defined]


def test_unknown_records_and_routes_are_404(client: TestClient) -> None:
    for path in ("/ClaimResponse/none", "/determinations/none", "/determinations/none/notice",
                 "/QuestionnaireResponse/none", "/Patient/1"):  # fmt: skip
        outcome_of(client.get(path), 404)


def test_wrong_method_is_an_operation_outcome(client: TestClient) -> None:
    outcome_of(client.delete("/Questionnaire/eocco329-initial"), 405)


def test_internal_error_is_500_without_traceback_or_patient_data_in_the_log(
    catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 names the request id; neither the reply nor the log carries the
    exception's message, where patient data may be (here a birth date and a
    member's reference)."""
    caplog.set_level(logging.INFO, logger="dtr.service")

    class BrokenStore(SQLiteStore):
        def save_all(self, records):  # type: ignore[no-untyped-def]
            raise RuntimeError(f"disk on fire: {records[0].response['subject']} born 1968-04-12")

    app = create_app(
        Settings(database=":memory:"), catalog=catalog, store=BrokenStore(tmp_path / "s.db")
    )
    client = authorize(TestClient(app, raise_server_exceptions=False))
    reply = post(client, response(catalog, subject="Patient/secret-123"))
    text = outcome_of(reply, 500)
    rid = reply.headers["x-request-id"]
    assert rid in text
    assert "disk on fire" not in text
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert f"request {rid} failed: RuntimeError" in logged and "save" in logged
    for secret in ("secret-123", "1968-04-12", "disk on fire"):
        assert secret not in logged


def test_requests_are_logged_with_id_and_no_patient_data(
    client: TestClient, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dtr.service")
    reply = client.post(
        "/QuestionnaireResponse/$evaluate",
        content=json.dumps(response(catalog, subject="Patient/secret-123")),
        headers={**FHIR, "X-Request-ID": "0b8e6a3c-5f1d-4c2a-9e7b-2d4f6a8c0e11"},
    )
    assert reply.headers["x-request-id"] == "0b8e6a3c-5f1d-4c2a-9e7b-2d4f6a8c0e11"
    lines = [r.getMessage() for r in caplog.records if r.name == "dtr.service"]
    assert any(
        line.startswith(
            "0b8e6a3c-5f1d-4c2a-9e7b-2d4f6a8c0e11 POST /QuestionnaireResponse/$evaluate 201"
        )
        for line in lines
    )
    assert not any("secret-123" in line or "1968-04-12" in line for line in lines)


def test_portal_page_is_served(client: TestClient) -> None:
    add_user(client.app.state.store, "office")  # type: ignore[attr-defined]
    sign_in(client, "office")
    page = client.get("/")
    assert page.status_code == 200
    assert "/static/lforms/webcomponent/main.js" in page.text
    assert "eocco329-initial" in page.text and "mn-dhs-mekinist-renewal" in page.text
    # the script is given the extensions' canonical URLs, named once in Python
    assert f'<meta name="priority-extension" content="{PRIORITY_EXTENSION}">' in page.text
    assert f'<meta name="birth-date-extension" content="{BIRTH_DATE_EXTENSION}">' in page.text
    assert "example.org" not in client.get("/static/portal.js").text
    assert client.get("/static/portal.js").status_code == 200


def test_a_store_of_the_previous_release_migrates_and_serves_its_records(tmp_path: Path) -> None:
    import sqlite3
    from contextlib import closing

    from tests.service.store_checks import check_served, check_store, write_old_database

    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        write_old_database(lambda sql, args: db.execute(sql, args) and None, "?")
        db.commit()
    check_store(SQLiteStore(path))
    check_served(str(path))
    from service.migrations import LATEST

    assert SQLiteStore(path).migrated == (LATEST, LATEST)  # opened again: nothing to apply


def test_the_host_header_never_reaches_what_the_service_publishes(
    catalog: Catalog, tmp_path: Path
) -> None:
    """The public base URL is configuration: a client's Host header lands
    neither in Location nor in the CapabilityStatement."""
    settings = Settings(
        database=str(tmp_path / "host.sqlite3"), base_url="https://pa.payer.example/fhir"
    )
    client = authorize(TestClient(create_app(settings, catalog=catalog, clock=lambda: AS_OF)))
    evil = {**FHIR, "host": "evil.example"}
    reply = post(client, response(catalog), headers=evil)
    assert reply.headers["location"].startswith("https://pa.payer.example/fhir/ClaimResponse/")
    assert "evil.example" not in reply.text + str(dict(reply.headers))
    metadata = client.get("/metadata", headers={"host": "evil.example"}).json()
    assert metadata["implementation"]["url"] == "https://pa.payer.example/fhir"
    # without configuration, the address the service listens on
    assert Settings(host="0.0.0.0", port=9000).public_url == "http://0.0.0.0:9000"


def test_security_headers(client: TestClient, catalog: Catalog) -> None:
    """Every reply: nosniff and no referrer; pages (portal, notice) also a
    content security policy that frames them only in this service."""
    reply = post(client, response(catalog))
    api = [reply, client.get("/metadata"), client.get("/nope")]
    notice = client.get(f"/determinations/{reply.json()['id']}/notice")
    for answer in [*api, client.get("/"), notice]:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    for page in (client.get("/"), notice):
        policy = page.headers["content-security-policy"]
        assert "frame-ancestors 'self'" in policy and "script-src 'self'" in policy
        assert "'unsafe-eval'" not in policy
    assert "content-security-policy" not in reply.headers


def test_every_read_of_a_members_data_is_audited(
    client: TestClient, catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dtr.cli import main

    reply = post(client, response(catalog, subject="Patient/audited"))
    rid = reply.json()["id"]
    for path in (
        f"/determinations/{rid}",
        f"/ClaimResponse/{rid}",
        f"/QuestionnaireResponse/{rid}",
        f"/determinations/{rid}/notice",
        "/determinations/no-such-record",
    ):
        client.get(path)
    store = client.app.state.store  # type: ignore[attr-defined]
    trail = store.audit_trail("ref:Patient/audited")
    assert sorted(e.what for e in trail) == sorted(
        [
            f"determinations/{rid}",
            f"ClaimResponse/{rid}",
            f"QuestionnaireResponse/{rid}",
            f"determinations/{rid}/notice",
        ]
    )
    assert {e.who for e in trail} == {"client test-ehr (Test EHR test-ehr) from testclient"}
    assert all(e.request_id and e.at for e in trail)
    assert store.audit_trail("ref:Patient/someone-else") == []
    # the payer reads the trail from the command line
    assert (
        main(["audit", "--db", str(tmp_path / "store.sqlite3"), "--member", "Patient/audited"]) == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 4
