"""A request's documents through the API: the pharmacist and the office that
sent the request open each attachment from the case, byte for byte, served
as a document and never as a page of the service (its type when allowed,
else a download; a safe file name; nosniff; a sandboxing CSP; no-store);
another organization, a backend client and an unknown id get nothing; every
open is in the trail. The case table tests/cases/documents.yaml holds how
each declared type and title is served."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from review.request import NPI_SYSTEM
from scoring.fill import fill
from tests.support.callers import People, add_user, authorize, sign_in
from tests.support.cases import base_answers, package_for
from tests.support.dtr_requests import FHIR

# a one-page PDF: what the office attached, returned byte for byte
PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
)
PAGE = b"<!doctype html><script>alert(document.cookie)</script><p>chart</p>"


def request(
    catalog: Catalog, rid: str, data: bytes, content_type: str | None, title: str | None
) -> dict[str, Any]:
    """An EOCCO329 initial request above the quantity limit (so it waits for
    the pharmacist), its KRAS report the attachment given."""
    document: dict[str, Any] = {"data": base64.b64encode(data).decode()}
    if content_type is not None:
        document["contentType"] = content_type
    if title is not None:
        document["title"] = title
    answers = {
        **base_answers("eocco329", "initial_met"), "requested_quantity": 90,
        "document_i_d_2": document,
    }  # fmt: skip
    response = fill(package_for(catalog, "eocco329", "initial"), answers, response_id=rid)
    response["subject"] = {"display": "Jane Example", "identifier": {"value": "EX123456"}}
    response["author"] = {"identifier": {"system": NPI_SYSTEM, "value": "1234567893"}}
    return response


def submitted(
    people: People, catalog: Catalog, data: bytes = PDF, content_type: str | None = "application/pdf",
    title: str | None = "KRAS report.pdf", rid: str = "with-report",
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """The record id of a request the office sent, and its document as the
    pharmacist's case lists it."""
    created = people.submit(request(catalog, rid, data, content_type, title))
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]
    case = people.pharmacist.get(f"/review/cases/{record_id}").json()
    (document,) = case["attachments"]
    return record_id, document


def opens(people: People, record_id: str) -> list[tuple[str, str]]:
    """Who opened which document of the record: the trail's document reads."""
    trail = people.pharmacist.get(f"/review/cases/{record_id}").json()["trail"]
    return [(t["who"].split(" (")[0], t["what"]) for t in trail if "/documents/" in t["what"]]


def test_the_pharmacist_and_the_sending_office_open_the_pdf(
    people: People, catalog: Catalog
) -> None:
    record_id, document = submitted(people, catalog)
    assert document["title"] == "KRAS report.pdf"
    assert (document["contentType"], document["size"]) == ("application/pdf", len(PDF))
    href = document["href"]
    assert href.startswith(f"/cases/{record_id}/documents/")

    # the case page links it, in a new tab, with its type and size
    page = people.pharmacist.get(f"/review/{record_id}").text
    assert f'href="{href}" target="_blank" rel="noopener"' in page
    assert f"(application/pdf, {len(PDF)} Bytes; opens in a new tab)" in page

    for reader in (people.pharmacist, people.office):
        opened = reader.get(href)
        assert opened.status_code == 200, opened.text
        assert opened.content == PDF
        assert opened.headers["content-type"] == "application/pdf"
        assert opened.headers["content-disposition"] == (
            "inline; filename=\"KRAS report.pdf\"; filename*=UTF-8''KRAS%20report.pdf"
        )
        assert opened.headers["x-content-type-options"] == "nosniff"
        assert opened.headers["content-security-policy"] == "sandbox; default-src 'none'"
        assert opened.headers["cache-control"] == "no-store"

    # each open is a read of the member's data: who, the record, the document
    what = f"{href.removeprefix('/')} (KRAS report.pdf)"
    assert opens(people, record_id) == [("user pat", what), ("user ann", what)]
    # the link stays the same whoever reads the case, and it names no title
    again = people.pharmacist.get(f"/review/cases/{record_id}").json()["attachments"][0]
    assert again["href"] == href and "KRAS" not in href


def test_no_one_else_opens_it(people: People, catalog: Catalog) -> None:
    record_id, document = submitted(people, catalog)
    href = document["href"]

    # another organization's office: as unknown as an id that does not exist
    add_user(people.office.app.state.store, "bob", "office", "clinic-b")  # type: ignore[attr-defined]
    other = TestClient(people.office.app)
    sign_in(other, "bob")
    unknown_record = people.pharmacist.get(f"/cases/{'0' * 32}/documents/{href.rsplit('/', 1)[1]}")
    unknown_document = people.pharmacist.get(f"/cases/{record_id}/documents/{'0' * 32}")
    refused = other.get(href)
    for reply in (refused, unknown_record, unknown_document):
        assert reply.status_code == 404, reply.text
        assert reply.json()["resourceType"] == "OperationOutcome"
    assert PDF not in refused.content

    # a backend client: refused whoever owns the record, its own included
    system = authorize(TestClient(people.office.app))
    assert system.get(href).status_code == 403
    own = system.post(
        "/QuestionnaireResponse/$evaluate",
        content=json.dumps(request(catalog, "from-a-system", PDF, "application/pdf", "r.pdf")),
        headers=FHIR,
    )
    assert own.status_code == 201, own.text
    own_case = people.pharmacist.get(f"/review/cases/{own.json()['id']}").json()
    reply = system.get(own_case["attachments"][0]["href"])
    assert reply.status_code == 403 and "signed-in person" in reply.text
    assert PDF not in reply.content
    # nobody signed in: who are you?
    assert TestClient(people.office.app).get(href).status_code == 401

    # nothing refused is in the trail as an open
    assert opens(people, record_id) == []


def test_an_html_attachment_is_downloaded_never_rendered(people: People, catalog: Catalog) -> None:
    record_id, document = submitted(people, catalog, PAGE, "text/html", "chart.html")
    assert document["inline"] is False
    page = people.pharmacist.get(f"/review/{record_id}").text
    assert "downloads: not shown in the browser" in page
    opened = people.pharmacist.get(document["href"])
    assert opened.status_code == 200 and opened.content == PAGE
    assert opened.headers["content-type"] == "application/octet-stream"
    assert opened.headers["content-disposition"].startswith("attachment;")
    assert opened.headers["x-content-type-options"] == "nosniff"
    assert opened.headers["content-security-policy"].startswith("sandbox;")
    # not a page of the service: none of the portal's page headers
    assert "x-frame-options" not in opened.headers


@pytest.mark.cases("documents.yaml")
def test_each_type_and_title_is_served_as_the_table_says(
    people: People, catalog: Catalog, case: dict[str, Any]
) -> None:
    data = b"the document's bytes \x00\xff"
    _, document = submitted(people, catalog, data, case["contentType"], case["title"])
    opened = people.office.get(document["href"])
    assert opened.status_code == 200, opened.text
    assert opened.content == data
    document_id = document["href"].rsplit("/", 1)[1]
    assert opened.headers["content-type"] == case["type"]
    assert opened.headers["content-disposition"] == case["disposition"].replace(
        "{id8}", document_id[:8]
    )
    assert opened.headers["x-content-type-options"] == "nosniff"
