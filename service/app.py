"""The HTTP service: FHIR API, DTR $questionnaire-package, scoring with a
durable audit of every determination, and the portal page.

Everything a client gets back is FHIR JSON (``application/fhir+json``), errors
included: each failure is an OperationOutcome with its status (400 malformed,
404 unknown, 413 too large, 415 wrong content type, 422 a response that does
not fit its Questionnaire, 500 with a request id and no traceback). Each
request is logged with its id, method, path, status and duration — never with
patient data.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cql_like.definitions import library
from scoring import Catalog, score_json
from scoring.determination import Determination, from_json
from scoring.fhir_outputs import claim_response, coverage_information
from scoring.notice import render_notice
from scoring.outcome import InvalidInput, Issue, operation_outcome
from scoring.response import parse_json
from service.fhir_api import (
    EVALUATE_DEFINITION,
    capability_statement,
    evaluate_operation_definition,
    questionnaire_package,
    searchset,
)
from service.settings import Settings
from service.store import Record, Store, open_store, response_key

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = {"application/fhir+json", "application/json"}
log = logging.getLogger("dtr.service")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON


def outcome_response(
    issues: list[Issue], status: int, request_id: str | None = None
) -> FHIRResponse:
    headers = {"X-Request-ID": request_id} if request_id else None
    return FHIRResponse(operation_outcome(issues), status_code=status, headers=headers)


def today_utc() -> date:
    return datetime.now(UTC).date()


def _version() -> str:
    try:
        return metadata.version("dtr-pa")
    except metadata.PackageNotFoundError:
        return "0"


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


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


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    store: Store | None = None,
    clock: Callable[[], date] = today_utc,
) -> FastAPI:
    settings = settings or Settings.from_env()
    if catalog is None:
        folder = settings.policies
        catalog = Catalog.from_folder(Path(folder)) if folder else Catalog.bundled()
    store = store or open_store(settings.database)
    # reads by id give the current version; searches by url|version find every
    # released version (records made under an older one still open)
    questionnaires = {p.questionnaire["id"]: p.questionnaire for p in catalog.current.values()}
    libraries_by_canonical = {
        canonical: library(p.policy, p.kind, p.questionnaire, p.drug)
        for canonical, p in catalog.packages.items()
    }
    libraries = {
        lib["id"]: lib
        for canonical, lib in libraries_by_canonical.items()
        if canonical in catalog.current
    }
    templates = Environment(
        loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html", "j2"])
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="dtr-pa",
        version=_version(),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        # a trailing slash names the same resource or operation (below), never a redirect
        redirect_slashes=False,
    )
    app.state.store = store
    started = datetime.now(UTC).isoformat(timespec="seconds")
    app.state.catalog = catalog

    static = resources.files("service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    def base_url(request: Request) -> str:
        return settings.base_url or str(request.base_url).rstrip("/")

    def request_id(request: Request) -> str:
        return str(getattr(request.state, "request_id", ""))

    async def read_body(request: Request, limit: int | None = None) -> bytes:
        """The body, refused past ``limit`` bytes (default: the tight limit of
        every body but a response, which may carry attachments)."""
        limit = limit or settings.max_body
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise BodyTooLarge(limit)
        return bytes(body)

    def require_json(request: Request) -> None:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ACCEPTED_TYPES:
            raise InvalidInput(
                [
                    Issue(
                        "not-supported",
                        f"content type {media or '(none)'!r} is not accepted; send application/fhir+json",
                    )
                ],
                415,
            )

    # --- middleware and errors ------------------------------------------------

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Any]) -> Response:
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        path = request.scope["path"]
        if len(path) > 1 and path.endswith("/"):
            request.scope["path"] = path.rstrip("/") or "/"
        start = time.perf_counter()
        try:
            response: Response = await call_next(request)
        except BodyTooLarge as exc:
            response = outcome_response(
                [Issue("too-long", f"the body exceeds the limit of {exc.limit} bytes")], 413
            )
        except Exception:
            log.exception("request %s failed", rid)
            response = outcome_response(
                [Issue("exception", f"internal error; quote request id {rid} to the payer")], 500
            )
        response.headers["X-Request-ID"] = rid
        log.info(
            "%s %s %s %d %.1fms",
            rid, request.method, request.url.path, response.status_code, (time.perf_counter() - start) * 1e3,
        )  # fmt: skip
        return response

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return outcome_response(exc.issues, exc.status, request_id(request))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return outcome_response(
            [Issue("too-long", f"the body exceeds the limit of {exc.limit} bytes")],
            413,
            request_id(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not-found" if exc.status_code == 404 else "not-supported"
        detail = exc.detail if isinstance(exc.detail, str) else "request not supported"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource or operation at {request.url.path}"
        return outcome_response([Issue(code, detail)], exc.status_code, request_id(request))  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return outcome_response([Issue("invalid", problems)], 400, request_id(request))

    def not_found(kind: str, rid: str) -> StarletteHTTPException:
        return StarletteHTTPException(404, f"{kind}/{rid} is not known to this service")

    # --- conformance ------------------------------------------------------------

    @app.get("/metadata")
    def metadata_endpoint(request: Request) -> FHIRResponse:
        return FHIRResponse(capability_statement(base_url(request), _version(), started))

    @app.get(f"/OperationDefinition/{EVALUATE_DEFINITION}")
    def operation_definition(request: Request) -> FHIRResponse:
        return FHIRResponse(evaluate_operation_definition(base_url(request)))

    # --- Questionnaires and Libraries ----------------------------------------------

    @app.get("/Questionnaire")
    def search_questionnaires(
        request: Request, url: str | None = None, version: str | None = None
    ) -> FHIRResponse:
        if url and "|" in url:
            url, version = url.split("|", 1)
        found = [
            q
            for q in (p.questionnaire for p in catalog.packages.values())
            if (url is None or q["url"] == url) and (version is None or q["version"] == version)
        ]
        return FHIRResponse(searchset(found, base_url(request)))

    @app.get("/Questionnaire/{qid}")
    def read_questionnaire(qid: str) -> FHIRResponse:
        if qid not in questionnaires:
            raise not_found("Questionnaire", qid)
        return FHIRResponse(questionnaires[qid])

    @app.get("/Library/{lid}")
    def read_library(lid: str) -> FHIRResponse:
        if lid not in libraries:
            raise not_found("Library", lid)
        return FHIRResponse(libraries[lid])

    @app.post("/Questionnaire/$questionnaire-package")
    async def package_operation(request: Request) -> FHIRResponse:
        require_json(request)
        body = parse_json(await read_body(request))
        return FHIRResponse(
            questionnaire_package(catalog, libraries_by_canonical, body, base_url(request))
        )

    # --- scoring ------------------------------------------------------------------

    def evaluate(resource: dict[str, Any], rid: str) -> tuple[Record, bool]:
        determination = score_json(catalog, resource, clock())
        package = catalog.resolve(determination.questionnaire)
        record_id = uuid.uuid4().hex
        record = Record(
            id=record_id,
            response_key=response_key(resource),
            response_id=resource.get("id"),
            request_id=rid,
            received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            questionnaire=determination.questionnaire,
            policy=package.policy.id,
            policy_version=package.policy.policy.version,
            evaluated_at=determination.evaluated_at.isoformat(),
            outcome=determination.outcome,
            response=dict(resource),
            determination=determination.to_json(),
            claim_response=claim_response(determination, record_id),
        )
        return store.save(record)

    @app.post("/QuestionnaireResponse/$evaluate")
    async def evaluate_operation(request: Request) -> FHIRResponse:
        require_json(request)
        resource = parse_json(await read_body(request, settings.max_response_body))
        if resource.get("resourceType") == "Parameters":
            resource = response_parameter(resource)
        record, created = await run_in_threadpool(evaluate, resource, request_id(request))
        base = base_url(request)
        headers = {
            "Location": f"{base}/ClaimResponse/{record.id}",
            "Link": f'<{base}/determinations/{record.id}>; rel="related"',
        }
        return FHIRResponse(
            record.claim_response, status_code=201 if created else 200, headers=headers
        )

    def stored(record_id: str, kind: str) -> Record:
        record = store.get(record_id)
        if record is None:
            raise not_found(kind, record_id)
        return record

    @app.get("/ClaimResponse/{record_id}")
    def read_claim_response(record_id: str) -> FHIRResponse:
        return FHIRResponse(stored(record_id, "ClaimResponse").claim_response)

    @app.get("/QuestionnaireResponse/{record_id}")
    def read_response(record_id: str) -> FHIRResponse:
        """The stored response, carrying the CRD coverage-information of its determination."""
        record = stored(record_id, "QuestionnaireResponse")
        response = dict(record.response)
        response["id"] = record.id
        determination = _determination(catalog, record)
        response["extension"] = [
            *response.get("extension", []),
            coverage_information(determination, record.id),
        ]
        return FHIRResponse(response)

    @app.get("/determinations/{record_id}")
    def read_determination(record_id: str, request: Request) -> JSONResponse:
        record = stored(record_id, "determinations")
        base = base_url(request)
        body = {
            "id": record.id,
            **record.determination,
            "claimResponse": f"{base}/ClaimResponse/{record.id}",
            "notice": f"{base}/determinations/{record.id}/notice",
        }
        return JSONResponse(body)

    @app.get("/determinations/{record_id}/notice")
    def read_notice(record_id: str, format: str = "html") -> Response:
        record = stored(record_id, "determinations")
        determination = _determination(catalog, record)
        if format == "text":
            return PlainTextResponse(render_notice(determination, "text"))
        return HTMLResponse(render_notice(determination, "html"))

    # --- portal -------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def portal() -> HTMLResponse:
        lforms_ready = (Path(str(static)) / "lforms" / "VERSION").exists()
        entries = sorted(
            (
                {"id": q["id"], "title": q["title"], "canonical": f"{q['url']}|{q['version']}"}
                for q in questionnaires.values()
            ),
            key=lambda e: e["id"],
        )
        page = templates.get_template("portal.html.j2").render(
            questionnaires=entries, lforms_ready=lforms_ready
        )
        return HTMLResponse(page)

    return app


def _determination(catalog: Catalog, record: Record) -> Determination:
    """The stored determination as an object, with the texts of its package."""
    package = catalog.resolve(record.questionnaire)
    return from_json(package, record.determination, record.response.get("subject"))
