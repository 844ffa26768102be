"""The HTTP service: ``create_app`` wires the routers, one per concern —
sign-in and tokens (``auth``), FHIR reads (``fhir_reads``), DTR operations
(``dtr_operations``), the CRD front door (``cds``: CDS Hooks), scoring and its outputs (``determinations``), a
request's documents (``documents``), the portal (``portal``), the office's
drafts (``office``), the pharmacist's review (``pharmacist``), the plan's
metrics (``plan_metrics``), the impact reports of new policy versions
(``impact_reports``) — over the pure core, with the store, the exception
handlers and the middlewares (``service.middleware``: request id and log,
security headers, errors, the caller, the rate limit).

Everything a client gets back is FHIR JSON (``application/fhir+json``), errors
included: each failure is an OperationOutcome with its status (400 malformed,
404 unknown, 413 too large, 415 wrong content type, 422 a response that does
not fit its Questionnaire, 500 with a request id and no traceback). Each
request is logged with its id, method, route (the template, not the path
sent), status and duration — never with patient data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from importlib import metadata, resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from access.tokens import JwksFetch
from cql_like.definitions import library
from qpackage.catalog import Catalog
from qpackage.package import library_canonicals, value_set_canonicals
from review.config import PayerConfig, load_payers
from scoring.outcome import InvalidInput, Issue
from service import (
    auth,
    cds,
    determinations,
    documents,
    dtr_operations,
    fhir_reads,
    impact_reports,
    office,
    pharmacist,
    plan_metrics,
    portal,
)
from service.accounts import Accounts
from service.http import AccessDenied, BodyTooLarge, Service, outcome_response, request_id
from service.limits import RateLimiter
from service.middleware import (
    Errors,
    Identify,
    RateLimit,
    RequestLog,
    SecurityHeaders,
    TrailingSlash,
)
from service.settings import Settings
from service.store import Store, open_store


def today_utc() -> date:
    return datetime.now(UTC).date()


def _version() -> str:
    try:
        return metadata.version("dtr-pa")
    except metadata.PackageNotFoundError:
        return "0"


def create_app(
    settings: Settings | None = None,
    *,
    catalog: Catalog | None = None,
    store: Store | None = None,
    clock: Callable[[], date] = today_utc,
    payers: dict[str, PayerConfig] | None = None,
    ehr_fetch: cds.EhrFetch | None = None,
    jwks_fetch: JwksFetch | None = None,
) -> FastAPI:
    """The service; ``ehr_fetch`` reads a CDS client's EHR (missing prefetch)
    and ``jwks_fetch`` the JWKS at a CDS client's allowed ``jku``, in place
    of HTTPS, as the tests' in-process EHR and key host do."""
    settings = settings or Settings.from_env()
    if catalog is None:
        folder = settings.policies
        catalog = Catalog.from_folder(Path(folder)) if folder else Catalog.bundled()
    if payers is None:
        # beside the policy files: {folder}/payers, or the bundled policies' payers/
        policies = (
            Path(settings.policies) if settings.policies else Path(str(resources.files("policies")))
        )
        payers = load_payers(policies / "payers")
    store = store or open_store(settings.database)
    service = Service(
        settings=settings,
        catalog=catalog,
        store=store,
        clock=clock,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        payers=payers,
    )
    current = catalog.current.values()
    service.questionnaires = {p.questionnaire["id"]: p.questionnaire for p in current}
    service.libraries = {
        logic["id"]: logic
        for logic in (library(p.policy, p.kind, p.questionnaire, p.drug) for p in current)
    }
    # the prepopulation Libraries the current Questionnaires name
    service.libraries |= {
        catalog.libraries[canonical]["id"]: catalog.libraries[canonical]
        for p in current
        for canonical in library_canonicals(p.questionnaire)
        if canonical in catalog.libraries
    }
    # the ValueSets the current Questionnaires reference, by id
    service.value_sets = {
        catalog.value_sets[canonical]["id"]: catalog.value_sets[canonical]
        for p in current
        for canonical in value_set_canonicals(p.questionnaire)
    }

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
    app.state.catalog = catalog
    app.state.service = service

    static = resources.files("service") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    accounts = Accounts(store)
    authenticator = auth.Authenticator(service, accounts)
    app.include_router(auth.router(service, authenticator))
    app.include_router(fhir_reads.router(service, _version()))
    app.include_router(dtr_operations.router(service))
    app.include_router(cds.router(service, accounts, ehr_fetch, jwks_fetch))
    app.include_router(determinations.router(service))
    app.include_router(documents.router(service))
    app.include_router(portal.router(service))
    app.include_router(office.router(service))
    app.include_router(pharmacist.router(service))
    app.include_router(plan_metrics.router(service))
    app.include_router(impact_reports.router(service))
    _outcomes(app)
    # the last added runs first: the request id and its log line outermost,
    # so that every reply (a 429, a 500) has both
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit else None
    app.add_middleware(RateLimit, limiter=limiter)
    app.add_middleware(Identify, authenticator=authenticator)
    app.add_middleware(TrailingSlash)
    app.add_middleware(Errors)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLog)
    return app


def _outcomes(app: FastAPI) -> None:
    """Each error a route raises, as an OperationOutcome with its status."""

    app.add_exception_handler(cds.HookError, cds.hook_error)

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return outcome_response(exc.issues, exc.status, request_id(request))

    @app.exception_handler(AccessDenied)
    async def access_denied(request: Request, exc: AccessDenied) -> Response:
        issue = Issue("login" if exc.status == 401 else "forbidden", exc.message)
        response = outcome_response([issue], exc.status, request_id(request))
        if exc.challenge:
            response.headers["WWW-Authenticate"] = exc.challenge
        return response

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
