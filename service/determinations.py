"""Scoring and its outputs: ``QuestionnaireResponse/$evaluate`` (stores the
response and its determination before answering), the PAS-style
ClaimResponse, the stored response with its CRD coverage-information, the
determination JSON and its notice.

A pended determination's context id (DTR ``context``) is its record id: the
``coverage-assertion-id`` of the coverage-information on the stored
response, and the id of the ClaimResponse.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from qpackage.catalog import Catalog, receive
from qpackage.draft import QR_COVERAGE
from review.config import needs_review
from review.decision import under_review
from review.member import member_key
from review.notice import notice_context, render_notice, render_notice_pdf
from review.overlap import RunningApproval, running_approvals
from review.request import priority_of
from scoring.determination import Determination, from_json
from scoring.fhir_outputs import claim_response, coverage_information
from scoring.outcome import InvalidInput, Issue
from scoring.response import parse_json
from service.auth import requirement, requires
from service.http import FHIRResponse, Service, request_id, require_json
from service.ownership import owned_record
from service.store import Record, Store, response_key

# the caller of each route, allowed what it does
Submitter = Annotated[Identity, requires("QuestionnaireResponse", "c")]
ResponseReader = Annotated[Identity, requires("QuestionnaireResponse", "r")]
# the stored request a path names, if its caller may read it (read audited)
_READS_CLAIM = requirement("ClaimResponse", "r")
OwnedClaim = Annotated[Record, owned_record("ClaimResponse", _READS_CLAIM)]
OwnedDetermination = Annotated[Record, owned_record("determinations", _READS_CLAIM)]
OwnedNotice = Annotated[Record, owned_record("determinations", _READS_CLAIM, "/notice")]
OwnedResponse = Annotated[
    Record, owned_record("QuestionnaireResponse", requirement("QuestionnaireResponse", "r"))
]


def response_parameter(parameters: dict[str, Any]) -> dict[str, Any]:
    """The QuestionnaireResponse of a Parameters body (its one ``response``)."""
    entries = parameters.get("parameter")
    if not isinstance(entries, list):
        raise InvalidInput(
            [Issue("structure", "Parameters.parameter must be a list", "Parameters.parameter")],
            400,
        )
    parts = [p for p in entries if isinstance(p, dict) and p.get("name") == "response"]
    if len(parts) != 1 or not isinstance(parts[0].get("resource"), dict):
        raise InvalidInput(
            [Issue("required", "Parameters must carry one 'response' resource")], 400
        )
    resource: dict[str, Any] = parts[0]["resource"]
    return resource


def _coverage_reference(response: dict[str, Any]) -> dict[str, Any] | None:
    for extension in response.get("extension", []):
        if isinstance(extension, dict) and extension.get("url") == QR_COVERAGE:
            reference = extension.get("valueReference")
            return reference if isinstance(reference, dict) else None
    return None


def stored_determination(catalog: Catalog, record: Record) -> Determination:
    """The stored determination as an object, with the texts of its package."""
    package = catalog.resolve(record.questionnaire)
    return from_json(package, record.determination, record.response.get("subject"))


def running_for(catalog: Catalog, store: Store, record: Record) -> list[RunningApproval]:
    """The member's approvals of the same policy running on the day this
    request arrived (an early renewal, a duplicate); none when the request
    names no member we can match."""
    if record.member is None:
        return []
    kind = catalog.resolve(record.questionnaire).kind
    # the day it was decided as of: the service's day of receipt, the day
    # authorizations are counted from
    received = date.fromisoformat(record.evaluated_at[:10])
    # approvals of requests received by then (to the second the store
    # keeps): a later one is the later request's overlap, not this one's
    approvals = store.approved_terms(record.member, record.policy, record.received_at)
    return running_approvals(approvals, received, kind, record.id)


def router(service: Service) -> APIRouter:
    api = APIRouter()
    store = service.store
    catalog = service.catalog

    def evaluate(resource: dict[str, Any], rid: str, owner: str | None) -> tuple[Record, bool]:
        priority = priority_of(resource)
        # a new request is decided under the version in effect now, its
        # answers carried over when it answered an earlier version
        received_as = receive(catalog, resource, service.clock())
        determination, package = received_as.determination, received_as.package
        record_id = uuid.uuid4().hex
        received = datetime.now(UTC).isoformat(timespec="seconds")
        payer = service.payers.get(determination.payer_id)
        recommendation = None
        if payer is not None and needs_review(payer, determination):
            # only a recommendation: pended for a pharmacist, who decides
            recommendation = determination.to_json()
            determination = under_review(determination)
        record = Record(
            id=record_id,
            response_key=response_key(resource, owner),
            response_id=resource.get("id"),
            request_id=rid,
            received_at=received,
            questionnaire=determination.questionnaire,
            policy=package.policy.id,
            policy_version=package.policy.policy.version,
            evaluated_at=determination.evaluated_at.isoformat(),
            outcome=determination.outcome,
            response=received_as.response,
            determination=determination.to_json(),
            claim_response=claim_response(determination, record_id),
            member=member_key(resource.get("subject")),
            owner=owner,
            state="awaiting-review" if recommendation else "automatic",
            priority=priority,
            decided_at=None if recommendation else received,
            recommendation=recommendation,
            submitted=dict(resource) if received_as.carried else None,
        )
        return store.save(record)

    @api.post("/QuestionnaireResponse/$evaluate")
    async def evaluate_operation(request: Request, caller: Submitter) -> FHIRResponse:
        require_json(request)
        body = await service.read_body(request, service.settings.max_response_body)
        resource = parse_json(body)
        if resource.get("resourceType") == "Parameters":
            resource = response_parameter(resource)
        record, created = await run_in_threadpool(
            evaluate, resource, request_id(request), caller.owner
        )
        base = service.base
        headers = {
            "Location": f"{base}/ClaimResponse/{record.id}",
            "Link": f'<{base}/determinations/{record.id}>; rel="related"',
        }
        return FHIRResponse(
            record.claim_response, status_code=201 if created else 200, headers=headers
        )

    @api.get("/ClaimResponse/{record_id}")
    def read_claim_response(record: OwnedClaim) -> FHIRResponse:
        return FHIRResponse(record.claim_response)

    @api.get("/QuestionnaireResponse/{record_id}")
    def read_response(record: OwnedResponse) -> FHIRResponse:
        """The stored response, carrying the CRD coverage-information of its determination."""
        response = dict(record.response)
        response["id"] = record.id
        determination = stored_determination(catalog, record)
        response["extension"] = [
            *response.get("extension", []),
            coverage_information(determination, record.id, _coverage_reference(record.response)),
        ]
        return FHIRResponse(response)

    @api.get("/determinations/{record_id}")
    def read_determination(record: OwnedDetermination) -> JSONResponse:
        base = service.base
        body = {
            "id": record.id,
            **record.determination,
            "claimResponse": f"{base}/ClaimResponse/{record.id}",
            "notice": f"{base}/determinations/{record.id}/notice",
        }
        if record.outcome == "pended":
            # DTR: $questionnaire-package with this context reopens the request
            body["context"] = record.id
        running = running_for(catalog, service.store, record)
        if running:
            # when and what, not which record: it may be another office's
            body["runningApprovals"] = [
                {**{k: v for k, v in r.to_json().items() if k != "id"}, "text": r.sentence()}
                for r in running
            ]
        return JSONResponse(body)

    @api.get("/determinations/{record_id}/notice")
    def read_notice(record: OwnedNotice, format: str = "html") -> Response:
        determination = stored_determination(catalog, record)
        context = notice_context(
            catalog.resolve(record.questionnaire),
            record.response,
            reference=record.id,
            received=record.received_at,
            decided=record.decided_at,
            payer=service.payers.get(determination.payer_id),
        )
        if format == "text":
            return PlainTextResponse(render_notice(determination, "text", context))
        if format == "pdf":
            return Response(
                render_notice_pdf(determination, context),
                media_type="application/pdf",
                headers={"Content-Disposition": f'inline; filename="notice-{record.id}.pdf"'},
            )
        return HTMLResponse(render_notice(determination, "html", context))

    return api
