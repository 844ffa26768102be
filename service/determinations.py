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
from dataclasses import dataclass
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
from review.notice import NoticeReply, notice_context, render_notice, render_notice_pdf
from review.overlap import RunningApproval, running_approvals
from review.reference import shown
from review.request import priority_of
from scoring.determination import Determination, from_json
from scoring.fhir_outputs import claim_response, coverage_information
from scoring.outcome import InvalidInput, Issue
from scoring.response import parse_json
from service.auth import requirement, requires
from service.http import FHIRResponse, Service, request_id, require_json
from service.ownership import owned_record
from service.replies import Replies, Reply, ReplyRequest, new_documents_refused, reply_parameters
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


def notice_reply(reply: Reply | None) -> NoticeReply | None:
    """The office's last reply to a pend, as the notice after it names it."""
    if reply is None:
        return None
    return NoticeReply(received=reply.at, asked=reply.asked, asked_at=reply.asked_at)


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


@dataclass(frozen=True)
class Scored:
    """A response decided: its policy, and the record's columns it sets."""

    policy: str
    changes: dict[str, Any]


def router(service: Service) -> APIRouter:
    api = APIRouter()
    store = service.store
    catalog = service.catalog
    replies = Replies(store)

    def scored(resource: dict[str, Any], record_id: str, received: str, review: bool) -> Scored:
        """The response decided as any request is: under the version in
        effect now (its answers carried over when it answered an earlier
        version), held for a pharmacist when the payer's rule says so or
        ``review`` asks it (a reply to a pharmacist's pend)."""
        received_as = receive(catalog, resource, service.clock())
        determination, package = received_as.determination, received_as.package
        payer = service.payers.get(determination.payer_id)
        recommendation = None
        if review or (payer is not None and needs_review(payer, determination)):
            # only a recommendation: pended for a pharmacist, who decides
            recommendation = determination.to_json()
            determination = under_review(determination)
        return Scored(
            policy=package.policy.id,
            changes={
                "questionnaire": determination.questionnaire,
                "policy_version": package.policy.policy.version,
                "evaluated_at": determination.evaluated_at.isoformat(),
                "outcome": determination.outcome,
                "response": received_as.response,
                "determination": determination.to_json(),
                "claim_response": claim_response(determination, record_id),
                "state": "awaiting-review" if recommendation else "automatic",
                "decided_at": None if recommendation else received,
                "recommendation": recommendation,
                "submitted": dict(resource) if received_as.carried else None,
            },
        )

    def evaluate(resource: dict[str, Any], rid: str, owner: str | None) -> Record:
        """A new request's record, decided (not yet stored)."""
        priority = priority_of(resource)
        record_id = uuid.uuid4().hex
        received = datetime.now(UTC).isoformat(timespec="seconds")
        decided = scored(resource, record_id, received, review=False)
        return Record(
            id=record_id,
            response_key=response_key(resource, owner),
            response_id=resource.get("id"),
            request_id=rid,
            received_at=received,
            policy=decided.policy,
            member=member_key(resource.get("subject")),
            owner=owner,
            priority=priority,
            **decided.changes,
        )

    def reply(resource: dict[str, Any], asked: ReplyRequest, rid: str, caller: Identity) -> Record:
        """The reply joined to the pended request it answers (see
        :mod:`service.replies`); refused with nothing changed otherwise."""
        record = store.get(asked.context)
        if record is None or record.owner is None or record.owner != caller.owner:
            raise InvalidInput(
                [Issue("not-found", f"context {asked.context}: no request of yours has that id")],
                404,
            )
        if record.outcome != "pended" or record.state == "awaiting-review":
            now = (
                "with a pharmacist, who has asked nothing of you yet"
                if (record.state == "awaiting-review")
                else f"decided ({record.outcome})"
            )
            raise InvalidInput(
                [
                    Issue(
                        "business-rule",
                        f"request {record.id} is {now}: a reply answers a pended request;"
                        " nothing was changed",
                    )
                ],
                409,
            )
        priority_of(resource)  # standard or expedited, as any request
        refused = new_documents_refused(record.response, resource)
        if refused is not None:
            raise refused
        # to the millisecond, as the pharmacist's actions: the trail orders them
        received = service.now().isoformat(timespec="milliseconds")
        asked_for = record.determination.get("review", {}).get("requested")
        pharmacist_pend = record.state == "reviewed"
        decided = scored(resource, record.id, received, review=pharmacist_pend)
        member = member_key(resource.get("subject"))
        if decided.policy != record.policy or member != record.member:
            what = "policy" if decided.policy != record.policy else "member"
            raise InvalidInput(
                [
                    Issue(
                        "business-rule",
                        f"the reply is about another {what} than request {record.id}:"
                        " send it as a new request; nothing was changed",
                    )
                ],
                422,
            )
        entry = Reply(
            id=uuid.uuid4().hex,
            record_id=record.id,
            at=received,
            who=caller.describe(),
            request_id=rid,
            note=asked.note,
            documents=asked.documents,
            asked=asked_for if pharmacist_pend else None,
            asked_at=record.decided_at,
            response_before=record.response,
            outcome_before=record.outcome,
            outcome_after=decided.changes["outcome"],
            state_after=decided.changes["state"],
        )
        if not replies.join(record.id, record.state, decided.changes, entry):
            raise InvalidInput(
                [Issue("business-rule", f"request {record.id} changed meanwhile: reload it")], 409
            )
        joined = store.get(record.id)
        assert joined is not None
        return joined

    @api.post("/QuestionnaireResponse/$evaluate")
    async def evaluate_operation(request: Request, caller: Submitter) -> FHIRResponse:
        require_json(request)
        body = await service.read_body(request, service.settings.max_response_body)
        resource = parse_json(body)
        asked = None
        if resource.get("resourceType") == "Parameters":
            parameters = resource
            resource = response_parameter(parameters)
            asked = reply_parameters(parameters)
        if asked is not None:
            # a reply: the same record, answered anew (200)
            record = await run_in_threadpool(reply, resource, asked, request_id(request), caller)
            created = False
        else:
            # scored here, on the event loop: it is CPU alone (the catalog and
            # payers are in memory), and a thread hop cost more than it saved
            record = evaluate(resource, request_id(request), caller.owner)
            # stored before the reply, by the store's writer thread in a group
            record, created = await store.saves.save(record)
        base = service.base
        headers = {
            "Location": f"{base}/ClaimResponse/{record.id}",
            "Link": f'<{base}/determinations/{record.id}>; rel="related"',
        }
        return FHIRResponse(
            record.claim_response, status_code=201 if created else 200, headers=headers
        )

    def unanswered(resource: dict[str, Any]) -> list[dict[str, str]]:
        """The questions whose answers the request would pend for, each with
        its text; none when it would not pend for missing answers."""
        determination = receive(catalog, resource, service.clock()).determination
        if determination.outcome != "pended" or determination.pend_reason != "missing-information":
            return []
        return [
            {"linkId": link, "question": determination.question_text.get(link, link)}
            for link in determination.missing_questions
        ]

    @api.post("/submissions/check")
    async def check_submission(request: Request, caller: Submitter) -> JSONResponse:
        """What a submission would leave unanswered, before it is made: the
        portal asks the office whether to submit anyway (the request would
        pend) or answer first. Nothing is stored, nothing decided is told."""
        require_json(request)
        body = await service.read_body(request, service.settings.max_response_body)
        resource = parse_json(body)
        if resource.get("resourceType") == "Parameters":
            resource = response_parameter(resource)
        questions = await run_in_threadpool(unanswered, resource)
        return JSONResponse({"unanswered": questions}, headers={"Cache-Control": "no-store"})

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
            # the short reference an office reads out, beside the id
            "reference": shown(record.reference) if record.reference else None,
        }
        if record.outcome == "pended":
            # DTR: $questionnaire-package with this context reopens the request
            body["context"] = record.id
        latest = replies.latest(record.id)
        if latest is not None:
            # the office's last reply to a pend: the request it answered
            body["reply"] = {
                "received": latest.at,
                "answers": latest.asked,
                "askedAt": latest.asked_at,
                "note": latest.note,
                "documents": len(latest.documents),
            }
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
            reference=shown(record.reference) if record.reference else record.id,
            record_id=record.id,
            received=record.received_at,
            decided=record.decided_at,
            payer=service.payers.get(determination.payer_id),
            reply=notice_reply(replies.latest(record.id)),
            reply_url=f"{service.base}/?context={record.id}",
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
