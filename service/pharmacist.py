"""The pharmacist's review: the queue, a case, and the decision — API and
pages over :mod:`review.decision`.

- ``GET /review/queue`` and the page ``/review``: every request awaiting a
  pharmacist, expedited first, then oldest, each with the time left against
  the payer's decision deadline (``policies/payers``); a case the office
  replied to is as old as its reply, the deadline running again from it.
- ``GET /review/decided`` and ``/review?view=decided``: the cases
  pharmacists decided, latest first; ``GET /review/pends`` and
  ``/review?view=pends``: those the signed-in pharmacist pended (asked the
  office for something). Each list is searched, filtered and paged as
  :mod:`service.listing` says; every review page has the same navigation
  (queue, my pends, decided, metrics).
- ``GET /review/cases/{id}`` and the page ``/review/{id}``: the answers
  (a coded answer by its option's text, the code beside it), each
  criterion's status (met, not met, unknown, not applicable) with the
  policy text, attachments (each linked to ``/cases/{id}/documents/…``,
  :mod:`service.documents`), the scorer's recommendation, and the trail of
  everything done to the request.
- ``POST /review/cases/{id}/decision`` (JSON) and the page's form: approve
  (at the quantity limit when the request is above it), approve in full
  (the quantity requested), deny (choosing the sections) or pend (asking
  for something), with a written rationale. A recommended approval modified
  to the limit shows as ``modified`` with the quantity approved of the
  quantity requested. The record's determination and ClaimResponse become the
  decision; the action is kept (who, when, what changed, why). A denial
  cites sections the criteria show not met, unknown or for review, or what
  the recommendation rests on (:func:`review.decision.uncited`); a section
  they show met or not applying is a 422 naming it and its status, and
  nothing changes, unless the body's ``override`` gives the reason it is
  cited anyway (kept in the trail, shown on the notice, never as not met).

All of it is the payer's staff's: a person signed in with a payer role
(the pharmacist), never a system, whatever its token's scopes — a backend
client registered with ``system/ClaimResponse.rus`` reads no queue and
decides nothing (403). The queue and a case need ``ClaimResponse`` search
rights, a decision update rights.
"""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from cql_like.engine import CompiledRequest, Evaluation
from review.decision import (
    ACTIONS,
    STATUS_WORDS,
    NotConfirmable,
    UnsupportedCitation,
    approved,
    denied,
    pended,
    recommended,
)
from review.documents import Document, documents
from review.notice import instant
from review.reference import shown
from review.request import facts
from scoring import assess
from scoring.determination import approve, from_json
from scoring.fhir_outputs import claim_response
from scoring.outcome import InvalidInput, Issue
from scoring.response import parse_json
from service.accounts import Accounts
from service.auth import Caller, requires
from service.casework import Casework, ReviewAction
from service.determinations import running_for
from service.http import AccessDenied, Service, not_found, require_json
from service.listing import page_of, search_of
from service.replies import Replies, earlier_documents
from service.store import Record

# the caller of each route, allowed what it does
QueueReader = Annotated[Identity, requires("ClaimResponse", "s", staff=True)]
Decider = Annotated[Identity, requires("ClaimResponse", "u", staff=True)]


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _answer_parts(value: Any, offered: list[dict[str, Any]]) -> dict[str, str | None]:
    """An answer as the case shows it: its text and, for a coded answer, the
    code beside it (the text is the option's display when the answer has none)."""
    if isinstance(value, dict) and "code" in value:
        match = next((c for c in offered if c.get("code") == value.get("code")), {})
        text = value.get("display") or match.get("display") or value["code"]
        return {"text": str(text), "code": str(value["code"]) if text != value["code"] else None}
    return {"text": _answer_text(value), "code": None}


# a user as the trail and the decision name them (Identity.describe)
_USER = re.compile(r"^user (\S+) \(")


def _when(text: str | None, zone: str = "UTC") -> str:
    """An ISO instant as a person reads it: in the payer's zone (its IANA
    name, the case's ``timeZone``) with the zone's abbreviation, as the
    notices say it."""
    if not text:
        return ""
    return instant(text, ZoneInfo(zone))


def _answer_text(value: Any) -> str:
    if isinstance(value, dict):
        if "display" in value or "code" in value:
            return str(value.get("display") or value.get("code"))
        if "title" in value or "contentType" in value:
            return f"attachment: {value.get('title') or value.get('contentType')}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _over_limit(
    package: CompiledRequest, evaluation: Evaluation, answers: dict[str, list[Any]], as_of: date
) -> dict[str, Any] | None:
    quantity = approve(package, evaluation, answers, as_of).quantity
    return quantity.to_json() if quantity is not None and quantity.modified else None


def reviewer(request: Request, identity: Identity | None) -> Identity | Response:
    """The caller of a review page: a signed-in pharmacist (a browser not
    signed in is sent to sign in; a system, or a person of another role, is
    refused with a 403)."""
    if identity is None:
        return RedirectResponse(f"/signin?next={request.url.path}", 303)
    if identity.kind != "user":
        raise AccessDenied(403, "the review is a signed-in pharmacist's, not a system's")
    if not identity.payer_staff or not identity.may("ClaimResponse", "u"):
        raise AccessDenied(403, f"role {identity.role} does not review requests")
    return identity


def router(service: Service) -> APIRouter:
    api = APIRouter()
    casework = Casework(service.store)
    replies = Replies(service.store)
    accounts = Accounts(service.store)
    catalog = service.catalog
    templates = Environment(
        loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    templates.filters["when"] = _when

    def named(who: str | None, names: dict[str, str] | None = None) -> str | None:
        """A user by display name (a system, or a user no longer known, as recorded)."""
        found = _USER.match(who) if who else None
        if found is None:
            return who
        names = names if names is not None else {u.username: u.name for u in accounts.users()}
        return names.get(found.group(1), who)

    def deadline(record: Record, package: CompiledRequest) -> dict[str, Any] | None:
        payer = service.payers.get(package.policy.policy.payer.identifier)
        if payer is None:
            return None
        rule = (
            payer.deadlines.expedited
            if record.priority == "expedited"
            else payer.deadlines.standard
        )
        # the clock runs again from the office's reply to a pend
        start = record.replied_at or record.received_at
        due = _instant(start) + timedelta(hours=rule.hours)
        left = (due - service.now()).total_seconds()
        return {"due": due.isoformat(timespec="minutes"), "secondsLeft": int(left),
                "hours": rule.hours, "text": rule.text, "citation": rule.citation,
                "from": "reply" if record.replied_at else "receipt",
                "start": start}  # fmt: skip

    def summary(record: Record) -> dict[str, Any]:
        package = catalog.resolve(record.questionnaire)
        request = facts(record.response)
        scorer = record.recommendation or {}
        quantity = scorer.get("quantity") or {}
        cut = bool(quantity.get("modified"))
        word = recommended(scorer["outcome"], scorer.get("pendReason"), cut) if scorer else None
        return {
            "id": record.id,
            "reference": shown(record.reference) if record.reference else None,
            "received": record.received_at,
            # the office's last reply to a pend (the queue orders by it)
            "replied": record.replied_at,
            # the payer's zone the pages show the times in (the JSON keeps UTC)
            "timeZone": str(service.zone(record.questionnaire)),
            "priority": record.priority,
            "policy": record.policy,
            "drug": package.policy.drug(package.drug).name,
            "request": package.kind,
            "member": {"name": request.member_name, "id": request.member_id},
            "prescriber": {"name": request.prescriber_name, "npi": request.prescriber_npi},
            "state": record.state,
            "outcome": record.outcome,
            "recommended": word,
            # a modified approval: what it approves of what was requested
            "recommendedQuantity": quantity if cut else None,
            "reviewer": record.reviewer,
            "reviewerName": named(record.reviewer),
            "decided": record.decided_at,
            "deadline": deadline(record, package),
        }

    def case(record: Record, request: Request) -> dict[str, Any]:
        package = catalog.resolve(record.questionnaire)
        as_of = date.fromisoformat(record.determination["evaluatedAt"])
        _, evaluation, answers = assess(package, record.response, as_of)
        index = package.index
        criteria = [
            {
                "section": section,
                "text": text,
                "status": STATUS_WORDS[evaluation.statuses[section]],
            }
            for section, text in index.section_text.items()
            if section in evaluation.statuses
        ]
        given = []
        for info in index.questions.values():
            values = answers.get(info.link_id, [])
            if not values:
                continue
            offered = package.codings.get(info.link_id, [])
            parts = [_answer_parts(v, offered) for v in values]
            given.append({"linkId": info.link_id, "section": info.section,
                          "question": info.question.text,
                          "answer": "; ".join(str(p["text"]) for p in parts),
                          "values": parts})  # fmt: skip
        questions = {info.link_id: info.question.text for info in index.questions.values()}

        def listed(d: Document, question: str) -> dict[str, Any]:
            return {
                "question": question,
                "linkId": d.link_id,
                "title": d.title,
                "contentType": d.content_type,
                "size": d.size,
                # a document the request carries opens here; a url only is the sender's
                "href": f"/cases/{record.id}/documents/{d.id}" if d.id else None,
                "inline": d.inline,
                "url": d.url,
            }

        attachments = [
            listed(d, questions.get(d.link_id, d.link_id)) for d in documents(record.response)
        ]
        sent = replies.of(record.id)
        zone = str(service.zone(record.questionnaire))
        for reply in sent:
            # what each reply sent beside the form (what the pharmacist asked for)
            attachments += [
                listed(d, f"Sent with the reply of {_when(reply.at, zone)}")
                for d in documents(earlier_documents([reply]))
                if d.link_id.startswith("reply ")
            ]
        service.audit(request, f"review case {record.id}", record.member)
        names = {u.username: u.name for u in accounts.users()}
        # submitted first: a stable sort keeps it ahead of what happened in its second
        trail = [
            {
                "at": record.received_at,
                "who": record.owner or "(before owners)",
                "what": "submitted",
            }
        ]
        trail += [
            {"at": e.at, "who": e.who, "what": e.what}
            for e in service.store.audit_trail(record.member, 1000)
            if record.id in e.what
        ]
        trail += [
            {
                "at": a.at,
                "who": a.who,
                "what": f"{a.action}: {a.outcome_before} → {a.outcome_after}; {a.rationale}"
                + (
                    f"; confirms {', '.join(a.reasons)}"
                    if a.action.startswith("approve") and a.reasons
                    else ""
                )
                + (
                    f"; override: cites {', '.join(a.override['sections'])} against the"
                    f" criteria's status: {a.override['reason']}"
                    if a.override
                    else ""
                ),
            }
            for a in casework.actions(record.id)
        ]
        trail += [
            {
                "at": r.at,
                "who": r.who,
                "what": f"replied: {r.outcome_before} → {r.outcome_after}"
                + (f"; answers “{r.asked}”" if r.asked else "")
                + (f"; note: {r.note}" if r.note else "")
                + (
                    f"; {len(r.documents)} document{'s' if len(r.documents) != 1 else ''}"
                    if r.documents
                    else ""
                )
                + "; the answers before it are kept",
            }
            for r in sent
        ]
        return {
            **summary(record),
            "sections": list(index.section_text),
            "sectionText": index.section_text,
            "criteria": criteria,
            # each section's status in words, for the denial's choices
            "statusOf": {c["section"]: c["status"] for c in criteria},
            "answers": given,
            "attachments": attachments,
            "recommendation": record.recommendation,
            "determination": record.determination,
            "questionnaire": record.questionnaire,
            # a response to a superseded version: the version it answered, what
            # did not carry over, and the response as sent
            "answered": record.determination.get("answered"),
            "submitted": record.submitted,
            # the quantity an approval would give, when the request is above
            # the limit: the pharmacist may approve it as cut or in full
            "overLimit": _over_limit(package, evaluation, answers, as_of),
            # the sections the payer lets a pharmacist approve by confirming
            # them ("pass to RPh; approve"): an approval may cite them
            "confirmable": confirmable(package),
            # approvals of this policy for this member running when it came in
            "runningApprovals": [
                {
                    **r.to_json(),
                    "text": r.sentence(),
                    "case": f"{service.base}/review/{r.record_id}",
                }
                for r in running_for(catalog, service.store, record)
            ],
            "trail": [
                {**t, "name": named(t["who"], names)} for t in sorted(trail, key=lambda t: t["at"])
            ],
            # the office's replies to pends: when, what was asked, the note
            "replies": [
                {
                    "at": r.at,
                    "who": r.who,
                    "asked": r.asked,
                    "askedAt": r.asked_at,
                    "note": r.note,
                    "documents": len(r.documents),
                    "outcomeBefore": r.outcome_before,
                    "outcomeAfter": r.outcome_after,
                }
                for r in sent
            ],
            "links": {
                "notice": f"{service.base}/determinations/{record.id}/notice",
                "claimResponse": f"{service.base}/ClaimResponse/{record.id}",
            },
        }

    def confirmable(package: CompiledRequest) -> list[dict[str, str]]:
        payer = service.payers.get(package.policy.policy.payer.identifier)
        return [
            {"section": section, "text": package.index.section_text[section],
             "confirm": approval.confirm}
            for approval in (payer.review.approvals if payer else [])
            if approval.policy == package.policy.id
            for section in approval.sections
            if section in package.index.section_text
        ]  # fmt: skip

    def find(record_id: str) -> Record:
        record = service.store.get(record_id)
        if record is None:
            raise not_found("review case", record_id)
        return record

    def decide(record: Record, body: dict[str, Any], caller: Identity) -> Record:
        action = body.get("action")
        rationale = body.get("rationale")
        reasons = body.get("reasons", [])
        if action not in ACTIONS:
            raise InvalidInput([Issue("value", f"action must be one of {', '.join(ACTIONS)}")], 400)
        if not isinstance(rationale, str) or not rationale.strip():
            raise InvalidInput([Issue("required", "a written rationale is required")], 400)
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise InvalidInput([Issue("value", "reasons must be a list of policy sections")], 400)
        confirmed = body.get("confirmed", [])
        if not isinstance(confirmed, list) or not all(isinstance(c, str) for c in confirmed):
            raise InvalidInput([Issue("value", "confirmed must be a list of policy sections")], 400)
        if confirmed and action not in ("approve", "approve-in-full"):
            raise InvalidInput([Issue("value", "confirmed is for an approval's sections")], 400)
        override = body.get("override")
        if override is not None and not isinstance(override, str):
            raise InvalidInput([Issue("value", "override must be the reason, as text")], 400)
        if override and action != "deny":
            raise InvalidInput([Issue("value", "an override is for a denial's sections")], 400)
        if record.state != "awaiting-review" or record.recommendation is None:
            raise InvalidInput(
                [Issue("business-rule", f"request {record.id} is not awaiting review")], 409
            )
        package = catalog.resolve(record.questionnaire)
        subject = record.response.get("subject")
        recommendation = from_json(package, record.recommendation, subject)
        on = service.clock()
        who = caller.describe()
        try:
            if action in ("approve", "approve-in-full"):
                _, evaluation, answers = assess(package, record.response, on)
                final = approved(
                    recommendation,
                    approve(package, evaluation, answers, on, subject),
                    rationale,
                    who,
                    in_full=action == "approve-in-full",
                    confirmed=confirmed,
                    confirmable=[c["section"] for c in confirmable(package)],
                )
            elif action == "deny":
                # the criteria's statuses as the case shows them
                as_of = date.fromisoformat(record.determination["evaluatedAt"])
                statuses = assess(package, record.response, as_of)[1].statuses
                final = denied(recommendation, reasons, rationale, who, on,
                               statuses=statuses, override=override)  # fmt: skip
            else:
                final = pended(recommendation, str(body.get("request") or ""), rationale, who, on)
        except (UnsupportedCitation, NotConfirmable) as exc:
            # nothing changes: the section and its status named
            raise InvalidInput([Issue("business-rule", str(exc))], 422) from None
        except ValueError as exc:
            raise InvalidInput([Issue("invalid", str(exc))], 400) from None
        at = service.now().isoformat(timespec="milliseconds")
        entry = ReviewAction(
            id=uuid.uuid4().hex, record_id=record.id, at=at, who=who, action=str(action),
            reasons=list(confirmed if str(action).startswith("approve") else reasons),
            rationale=rationale.strip(),
            request=final.requested, outcome_before=record.outcome, outcome_after=final.outcome,
            override={"sections": final.overridden, "reason": final.override}
            if final.override else None,
        )  # fmt: skip
        if not casework.decide(record, final.to_json(), claim_response(final, record.id), entry):
            raise InvalidInput(
                [Issue("business-rule", f"request {record.id} was decided meanwhile")], 409
            )
        return find(record.id)

    # --- API ---------------------------------------------------------------------------

    # each list of cases: which records, in which order
    VIEWS = {
        "queue": ("the queue", "queue"),
        "decided": ("decided", "decided"),
        "pends": ("my pends", "decided"),
    }

    def listed(view: str, request: Request, caller: Identity, page: bool = False) -> dict[str, Any]:
        """A page of one list of cases, as the query parameters search it
        (its links to other pages: the API's, or the review page's)."""
        params = dict(request.query_params)
        search = search_of(params, catalog)
        where: tuple[tuple[str, tuple[Any, ...]], ...] = (
            (("state = 'awaiting-review'", ()),)
            if view == "queue"
            else (("state = 'reviewed'", ()),)
        )
        if view == "pends":
            where += (("outcome = 'pended'", ()), ("reviewer = ?", (caller.describe(),)))
        records, total = casework.search(search, VIEWS[view][1], where)
        later = casework.later_requests(records)
        path = "/review/queue" if view == "queue" else f"/review/{view}"
        also = {"view": view} if page and view != "queue" else {}
        path = "/review" if page else path
        for member in sorted({r.member for r in records if r.member}):
            service.audit(request, f"review {view}", member)
        return {
            **page_of(path, params, search, total, len(records), also),
            "view": view,
            "cases": [summary(r) | {"supersededBy": later.get(r.id)} for r in records],
        }

    @api.get("/review/queue")
    def queue(request: Request, caller: QueueReader) -> JSONResponse:
        return JSONResponse(listed("queue", request, caller))

    @api.get("/review/decided")
    def decided(request: Request, caller: QueueReader) -> JSONResponse:
        return JSONResponse(listed("decided", request, caller))

    @api.get("/review/pends")
    def my_pends(request: Request, caller: QueueReader) -> JSONResponse:
        return JSONResponse(listed("pends", request, caller))

    @api.get("/review/cases/{record_id}")
    def read_case(record_id: str, request: Request, caller: QueueReader) -> JSONResponse:
        return JSONResponse(case(find(record_id), request))

    @api.post("/review/cases/{record_id}/decision")
    async def decision(record_id: str, request: Request, caller: Decider) -> JSONResponse:
        require_json(request)
        body = parse_json(await service.read_body(request))
        record = await run_in_threadpool(decide, find(record_id), body, caller)
        return JSONResponse(summary(record) | {"determination": record.determination})

    # --- pages ---------------------------------------------------------------------------

    def page(name: str, caller: Identity, **values: Any) -> HTMLResponse:
        html = templates.get_template(name).render(user=caller, csrf=caller.csrf, **values)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @api.get("/review", response_class=HTMLResponse)
    def queue_page(request: Request, identity: Caller) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        view = request.query_params.get("view", "queue")
        if view not in VIEWS:
            view = "queue"
        try:
            found = listed(view, request, caller, page=True)
        except InvalidInput as exc:
            problem = "; ".join(i.diagnostics for i in exc.issues)
            found = {"view": view, "cases": [], "total": 0, "filters": {}, "problem": problem}
        return page("review_queue.html.j2", caller, listing=found,
                    filters=dict(request.query_params))  # fmt: skip

    @api.get("/review/{record_id}", response_class=HTMLResponse)
    def case_page(
        record_id: str, request: Request, identity: Caller, problem: str | None = None
    ) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        return page(
            "review_case.html.j2", caller, case=case(find(record_id), request), problem=problem
        )

    @api.post("/review/{record_id}", response_class=HTMLResponse)
    async def decide_page(record_id: str, request: Request, identity: Caller) -> Response:
        caller = reviewer(request, identity)
        if isinstance(caller, Response):
            return caller
        pairs = parse_qsl((await service.read_body(request)).decode("utf-8", "replace"))
        form = dict(pairs)
        if not caller.csrf or not hmac.compare_digest(form.get("csrf", ""), caller.csrf):
            raise AccessDenied(403, "the CSRF token is missing or wrong: reload the page")
        body = {"action": form.get("action"), "rationale": form.get("rationale", ""),
                "reasons": [v for k, v in pairs if k == "reasons"], "request": form.get("request"),
                "confirmed": [v for k, v in pairs if k == "confirmed"],
                "override": form.get("override") or None}  # fmt: skip
        try:
            await run_in_threadpool(decide, find(record_id), body, caller)
        except InvalidInput as exc:
            problem = "; ".join(i.diagnostics for i in exc.issues)
            return page("review_case.html.j2", caller, case=case(find(record_id), request),
                        problem=problem)  # fmt: skip
        return RedirectResponse(f"/review/{record_id}", 303)

    return api
