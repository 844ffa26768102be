"""The office's own work in the portal: the drafts it keeps and the history
of what it submitted.

A prescriber's office rarely finishes a prior-authorization form in one
sitting: a chart must be found, a report scanned. A draft keeps the form as
far as it went, on the server (any computer of the practice can take it up),
and the history shows what the practice sent and where each request stands
(decided, pended for missing answers, with a pharmacist) with its notice.

- ``POST /drafts``: an in-progress QuestionnaireResponse; creates the
  caller's draft (201) or, when its ``id`` names one of the caller's drafts,
  updates it (200; needs ``QuestionnaireResponse.u``). An ``id`` naming
  another caller's draft is as unknown as one that does not exist: a new
  draft is made under a new id, as ``$evaluate`` makes a copy of another's
  response a record of the sender's own.
- ``GET /drafts``: the caller's drafts, most recently saved first (without
  their answers); ``GET /drafts/{id}`` one of them with its response;
  ``DELETE /drafts/{id}`` (``QuestionnaireResponse.d``). Another caller's
  draft is a 404.
- ``GET /submissions``: what the caller submitted, newest first, each with
  its short reference, the member, the form, where it stands and links to
  its determination, notice and ClaimResponse, its times in ISO-8601 UTC and
  (``shown``) as the office reads them, in the payer's zone (a payer's pharmacist sees
  everyone's); searched, filtered and paged as :mod:`service.listing`
  says. A pended request a later request of the same office completed (the
  same member and policy) says so (``supersededBy``).

A draft belongs to whoever saved it: the office's organization (everyone in
the practice), or a backend client. Reads of drafts and of the history show
members' data and are audited like every other read.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from review.member import member_key
from review.notice import instant
from review.reference import shown
from review.request import facts, priority_of
from scoring.carry import carry_over
from scoring.outcome import InvalidInput, Issue
from scoring.response import check_structure, parse_json
from service.auth import requirement, requires
from service.casework import Casework, Draft
from service.http import AccessDenied, Service, require_json
from service.listing import page_of, search_of
from service.ownership import owned_draft
from service.store import Record

# the caller of each route, allowed what it does
Creator = Annotated[Identity, requires("QuestionnaireResponse", "c")]
Reader = Annotated[Identity, requires("QuestionnaireResponse", "r")]
# the caller's own draft a path names (another's is a 404)
ReadableDraft = Annotated[Draft, owned_draft(requirement("QuestionnaireResponse", "r"))]
DeletableDraft = Annotated[Draft, owned_draft(requirement("QuestionnaireResponse", "d"))]

# a FHIR id: what a draft may be named by its response's ``id``
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# the determination's fields a history entry repeats (where the request stands)
STATUS_FIELDS = ("outcome", "pendReason", "authorization", "quantity", "missingQuestions", "review")


def _refused(message: str, where: str | None = None) -> InvalidInput:
    return InvalidInput([Issue("invalid", message, where)], 400)


def checked_draft(resource: Mapping[str, Any], known: Mapping[str, Any]) -> str:
    """The canonical (url|version) of the Questionnaire an in-progress
    response answers; anything else is a 400."""
    if resource.get("resourceType") != "QuestionnaireResponse":
        raise _refused(
            f"a draft is a QuestionnaireResponse, not {resource.get('resourceType')!r}",
            "QuestionnaireResponse.resourceType",
        )
    if resource.get("status") != "in-progress":
        raise _refused(
            f"a draft's status is in-progress, not {resource.get('status')!r}",
            "QuestionnaireResponse.status",
        )
    rid = resource.get("id")
    if rid is not None and not (isinstance(rid, str) and FHIR_ID.fullmatch(rid)):
        raise _refused(
            "a draft's id is 1 to 64 letters, digits, '-' or '.'", "QuestionnaireResponse.id"
        )
    canonical = resource.get("questionnaire")
    if not isinstance(canonical, str) or canonical not in known:
        raise _refused(
            f"a draft names a Questionnaire of this payer as url|version, not {canonical!r}",
            "QuestionnaireResponse.questionnaire",
        )
    priority_of(resource)  # standard or expedited
    try:
        check_structure(resource)
    except InvalidInput as exc:
        raise InvalidInput(exc.issues, 400) from None
    return canonical


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def router(service: Service) -> APIRouter:
    api = APIRouter()
    casework = Casework(service.store)

    def title_of(canonical: str) -> str:
        package = service.catalog.packages.get(canonical)
        return str(package.questionnaire.get("title", canonical)) if package else canonical

    def label_of(response: Mapping[str, Any], canonical: str) -> str:
        found = facts(response)
        who = found.member_name or found.member_id or "no patient named"
        return f"{who} — {title_of(canonical)}"

    def summary(draft: Draft) -> dict[str, Any]:
        found = facts(draft.response)
        return {
            "id": draft.id,
            "label": draft.label,
            "questionnaire": draft.questionnaire,
            "title": title_of(draft.questionnaire),
            "patient": found.member_name,
            "memberId": found.member_id,
            "created": draft.created_at,
            "updated": draft.updated_at,
            # the times as the office reads them, in the payer's zone
            "shown": {"updated": instant(draft.updated_at, service.zone(draft.questionnaire))},
            "link": f"/?draft={draft.id}",
        }

    def save(resource: dict[str, Any], canonical: str, caller: Identity) -> tuple[Draft, bool]:
        owner = caller.owner
        assert owner is not None
        given = resource.get("id")
        existing = casework.draft(given) if isinstance(given, str) else None
        if existing is not None and existing.owner != owner:
            existing = None
            given = None  # another's id: a draft of the caller's own, under a new id
        if existing is not None and not caller.may("QuestionnaireResponse", "u"):
            wanted = f"{caller.context}/QuestionnaireResponse.u"
            raise AccessDenied(403, f"updating a draft needs {wanted}")
        draft_id = given if isinstance(given, str) else uuid.uuid4().hex
        response = {**resource, "id": draft_id}
        now = _now()
        draft = Draft(
            id=draft_id,
            owner=owner,
            questionnaire=canonical,
            label=label_of(response, canonical),
            created_at=existing.created_at if existing else now,
            updated_at=now,
            response=response,
        )
        casework.save_draft(draft)
        return draft, existing is None

    @api.post("/drafts")
    async def save_draft(request: Request, caller: Creator) -> JSONResponse:
        require_json(request)
        body = await service.read_body(request, service.settings.max_response_body)
        resource = parse_json(body)
        canonical = checked_draft(resource, service.catalog.packages)
        if caller.owner is None:
            raise AccessDenied(403, "only an office or a client keeps drafts")
        draft, created = await run_in_threadpool(save, resource, canonical, caller)
        return JSONResponse(
            summary(draft),
            status_code=201 if created else 200,
            headers={"Location": f"{service.base}/drafts/{draft.id}"},
        )

    @api.get("/drafts")
    def list_drafts(request: Request, caller: Reader) -> JSONResponse:
        drafts = casework.drafts(caller.owner) if caller.owner else []
        for member in sorted({m for d in drafts if (m := member_key(d.response.get("subject")))}):
            service.audit(request, "drafts", member)
        return JSONResponse(
            {"drafts": [summary(d) for d in drafts]}, headers={"Cache-Control": "no-store"}
        )

    @api.get("/drafts/{draft_id}")
    def read_draft(draft: ReadableDraft, request: Request) -> JSONResponse:
        service.audit(request, f"drafts/{draft.id}", member_key(draft.response.get("subject")))
        return JSONResponse(
            {**summary(draft), **in_effect(draft)}, headers={"Cache-Control": "no-store"}
        )

    def in_effect(draft: Draft) -> dict[str, Any]:
        """The draft on the form that will decide it: a draft begun on a version
        since replaced reopens on the version in effect, with the answers that
        carry over (a draft whose answers do not check reopens as it was
        saved, and the submission says what is wrong)."""
        saved = {"questionnaire": draft.questionnaire, "response": draft.response}
        package = service.catalog.packages.get(draft.questionnaire)
        current = service.catalog.in_effect(package) if package else None
        if package is None or current is None or current is package:
            return saved
        try:
            moved = carry_over(package, current, draft.response)
        except InvalidInput:
            return saved
        return {
            "questionnaire": moved.response["questionnaire"],
            "title": title_of(moved.response["questionnaire"]),
            "response": moved.response,
            "answered": {"questionnaire": moved.answered, "notCarried": moved.not_carried},
        }

    @api.delete("/drafts/{draft_id}")
    def delete_draft(draft: DeletableDraft) -> Response:
        casework.delete_draft(draft.id)
        return Response(status_code=204)

    def entry(record: Record, later: str | None = None) -> dict[str, Any]:
        found = facts(record.response)
        base = service.base
        return {
            "id": record.id,
            "reference": shown(record.reference) if record.reference else None,
            "received": record.received_at,
            # the times as the office reads them, in the payer's zone
            "shown": {"received": instant(record.received_at, service.zone(record.questionnaire))},
            "patient": found.member_name,
            "memberId": found.member_id,
            "policy": record.policy,
            "questionnaire": record.questionnaire,
            "title": title_of(record.questionnaire),
            "priority": record.priority,
            "state": record.state,
            **{k: record.determination.get(k) for k in STATUS_FIELDS if k in record.determination},
            "determination": f"{base}/determinations/{record.id}",
            "notice": f"{base}/determinations/{record.id}/notice",
            "claimResponse": f"{base}/ClaimResponse/{record.id}",
            # a pend completed by a later request: that request's id
            "supersededBy": later,
        }

    @api.get("/submissions")
    def submissions(request: Request, caller: Reader) -> JSONResponse:
        params = dict(request.query_params)
        search = search_of(params, service.catalog)
        if caller.owner is None and caller.role != "pharmacist":
            records: list[Record] = []
            total = 0
        else:
            # a pharmacist (no owner) reads every record: the payer's view
            mine = (("owner = ?", (caller.owner,)),) if caller.owner else ()
            records, total = casework.search(search, "newest", mine)
        later = casework.later_requests(records)
        for member in sorted({r.member for r in records if r.member}):
            service.audit(request, "submissions", member)
        return JSONResponse(
            {
                **page_of("/submissions", params, search, total, len(records)),
                "submissions": [entry(r, later.get(r.id)) for r in records],
            },
            headers={"Cache-Control": "no-store"},
        )

    return api
