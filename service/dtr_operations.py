"""DTR operations: ``Questionnaire/$questionnaire-package``,
``Questionnaire/$next-question`` (adaptive forms) and
``Questionnaire/$log-questionnaire-errors`` (with the payer's list of the
reports received, ``GET /questionnaire-errors``).

Thin over :mod:`qpackage`: this router checks the body, looks up what the
request needs from the store (the request a ``context`` id names, the
member's approvals) and hands both to the pure package builder.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from qpackage.adaptive import next_question, static_url
from qpackage.package import CoverageAssertion, StoredRequest, questionnaire_package
from qpackage.parameters import error_log, package_request
from scoring.outcome import Issue, operation_outcome
from scoring.response import parse_json
from service.assertions import Assertions
from service.auth import requires
from service.http import FHIRResponse, Service, not_found, request_id, require_json
from service.store import ErrorReport

# the caller of each route, allowed what it does
read_forms = requires("Questionnaire", "r")
FormReader = Annotated[Identity, read_forms]


def router(service: Service) -> APIRouter:
    api = APIRouter()
    store = service.store
    catalog = service.catalog
    assertions = Assertions(store)

    def context_of(
        context_id: str | None, request: Request, caller: Identity
    ) -> StoredRequest | CoverageAssertion | None:
        """The request a context names, if the caller may read it: another
        caller's context is as unknown as one that does not exist. Or the
        CRD coverage assertion it names: it holds no answers, only the forms
        asserted, given for its member alone (``questionnaire_package``)."""
        record = store.get(context_id) if context_id else None
        if record is None and context_id:
            assertion = assertions.get(context_id)
            if assertion is not None:
                service.audit(
                    request, f"$questionnaire-package context {assertion.id}", assertion.member
                )
            return assertion
        if record is None or not caller.may("QuestionnaireResponse", "r"):
            return None
        if not caller.reads(record.owner):
            return None
        service.audit(request, f"$questionnaire-package context {record.id}", record.member)
        return StoredRequest(
            id=record.id,
            questionnaire=record.questionnaire,
            member=record.member,
            outcome=record.outcome,
            response=record.response,
        )

    def package(body: dict[str, Any], base: str, http: Request, caller: Identity) -> dict[str, Any]:
        request = package_request(body)
        return questionnaire_package(
            catalog,
            request,
            now=service.now(),
            base=base,
            context=context_of(request.context, http, caller),
            payers=service.payers,
            approved=lambda member, policy: [
                a.questionnaire for a in store.approvals(member, policy)
            ],
            released_at=catalog.released_at.get,
            as_of=service.clock(),
        )

    @api.post("/Questionnaire/$questionnaire-package")
    async def package_operation(request: Request, caller: FormReader) -> FHIRResponse:
        require_json(request)
        body = parse_json(await service.read_body(request))
        result = await run_in_threadpool(package, body, service.base, request, caller)
        return FHIRResponse(result)

    async def next_question_body(request: Request) -> FHIRResponse:
        require_json(request)
        body = parse_json(await service.read_body(request, service.settings.max_response_body))
        result = await run_in_threadpool(
            next_question, catalog, body, service.clock(), service.base
        )
        return FHIRResponse(result)

    @api.post("/Questionnaire/$next-question", dependencies=[read_forms])
    async def next_question_operation(request: Request) -> FHIRResponse:
        return await next_question_body(request)

    @api.post("/Questionnaire/{qid}/$next-question", dependencies=[read_forms])
    async def next_question_instance(qid: str, request: Request) -> FHIRResponse:
        if static_url(qid) is None and qid not in service.questionnaires:
            raise not_found("Questionnaire", qid)
        return await next_question_body(request)

    # any client of the forms may report a problem with one
    @api.post("/Questionnaire/$log-questionnaire-errors", dependencies=[read_forms])
    async def log_errors(request: Request) -> FHIRResponse:
        require_json(request)
        report = error_log(parse_json(await service.read_body(request)))
        issues = []
        for questionnaire in report.questionnaires:
            stored = ErrorReport(
                id=uuid.uuid4().hex,
                received_at=service.now().isoformat(timespec="seconds"),
                request_id=request_id(request),
                questionnaire=questionnaire,
                outcome=report.outcome,
            )
            await run_in_threadpool(store.log_error, stored)
            issues.append(
                Issue(
                    "informational",
                    f"error report {stored.id} logged for {questionnaire}",
                    severity="information",
                )
            )
            url = questionnaire.split("|")[0]
            if not any(key.split("|")[0] == url for key in catalog.packages):
                issues.append(
                    Issue(
                        "not-found",
                        f"{questionnaire} is not a Questionnaire of this payer;"
                        " the report is kept all the same",
                        severity="warning",
                    )
                )
        return FHIRResponse(operation_outcome(issues))

    # every client's reports, in one list: the payer's staff read it (a
    # signed-in pharmacist), no client, whatever its token's scopes
    @api.get(
        "/questionnaire-errors",
        dependencies=[requires("OperationOutcome", "s", staff=True)],
    )
    def list_errors(questionnaire: str | None = None, limit: int = 100) -> JSONResponse:
        """The error reports DTR clients sent, newest first."""
        reports = store.errors(questionnaire, max(1, min(limit, 1000)))
        return JSONResponse(
            {
                "total": len(reports),
                "reports": [
                    {
                        "id": r.id,
                        "receivedAt": r.received_at,
                        "requestId": r.request_id,
                        "questionnaire": r.questionnaire,
                        "outcome": r.outcome,
                    }
                    for r in reports
                ],
            }
        )

    return api
