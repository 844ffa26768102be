"""The HTTP service: ``create_app`` wires the routers, one per concern —
FHIR reads (``fhir_reads``), DTR operations (``dtr_operations``), scoring
and its outputs (``determinations``), the portal (``portal``) — over the
pure core, with the store, the request log and the error handling.

Everything a client gets back is FHIR JSON (``application/fhir+json``), errors
included: each failure is an OperationOutcome with its status (400 malformed,
404 unknown, 413 too large, 415 wrong content type, 422 a response that does
not fit its Questionnaire, 500 with a request id and no traceback). Each
request is logged with its id, method, route (the template, not the path
sent), status and duration — never with patient data.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cql_like.definitions import library
from qpackage.catalog import Catalog
from qpackage.package import library_canonicals, value_set_canonicals
from review.config import PayerConfig, load_payers
from scoring.outcome import InvalidInput, Issue
from service import (
    auth,
    determinations,
    dtr_operations,
    fhir_reads,
    metrics,
    office,
    portal,
    review,
)
from service.accounts import Accounts
from service.http import AccessDenied, BodyTooLarge, Service, outcome_response, request_id
from service.limits import RateLimiter
from service.settings import Settings
from service.store import Store, open_store

log = logging.getLogger("dtr.service")
# on every reply: no content sniffing, no referrer leaking a record's URL
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# on pages (the portal, notices): only this service's own scripts and data;
# LHC-Forms sets inline styles; the portal frames its own notices, nobody else
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
        " img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
}
# a client's X-Request-ID is kept when a machine made it (a UUID, or 16 to 64
# hex digits): free text there could be a name, and the id is logged
_REQUEST_ID = re.compile(
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{16,64})$"
)


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
) -> FastAPI:
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
    service.authenticator = auth.Authenticator(service, accounts)
    app.include_router(auth.router(service, accounts))
    app.include_router(fhir_reads.router(service, _version()))
    app.include_router(dtr_operations.router(service))
    app.include_router(determinations.router(service))
    app.include_router(portal.router(service))
    app.include_router(office.router(service))
    app.include_router(review.router(service))
    app.include_router(metrics.router(service))
    _handle_errors(app, settings, service.authenticator)
    return app


def _logged_path(request: Request) -> str:
    """The route's template (``/determinations/{record_id}``), never the path
    sent: a client chooses its ids and segments, and may put a name there."""
    route = request.scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "(route)"))
    return "/static/…" if request.url.path.startswith("/static/") else "(no route)"


def _handle_errors(app: FastAPI, settings: Settings, authenticator: auth.Authenticator) -> None:
    """The caller, the rate limit, the request log and every error as an
    OperationOutcome."""
    limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit else None

    @app.middleware("http")
    async def log_requests(request: Request, call_next: Callable[[Request], Any]) -> Response:
        given = request.headers.get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        path = request.scope["path"]
        if len(path) > 1 and path.endswith("/"):
            request.scope["path"] = path.rstrip("/") or "/"
        start = time.perf_counter()
        wait = 0.0
        try:
            if not path.startswith("/static/"):
                # the caller first: the rate limit is per caller, else per address
                identity = await authenticator.identify(request)
                if limiter is not None:
                    address = request.client.host if request.client else "unknown"
                    wait = limiter.take(identity.key if identity else f"address/{address}")
            if wait:
                response: Response = outcome_response(
                    [Issue("throttled", "too many requests from this client: retry later")], 429
                )
                response.headers["Retry-After"] = RateLimiter.retry_after(wait)
            else:
                response = await call_next(request)
        except BodyTooLarge as exc:
            response = outcome_response(
                [Issue("too-long", f"the body exceeds the limit of {exc.limit} bytes")], 413
            )
        except Exception as exc:
            # the exception's type and where it was raised, never its message
            # or values: either may carry patient data (an answer, a birth date)
            where = "; ".join(
                f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)[-5:]
            )
            log.error("request %s failed: %s (%s)", rid, type(exc).__name__, where)
            response = outcome_response(
                [Issue("exception", f"internal error; quote request id {rid} to the payer")], 500
            )
        response.headers["X-Request-ID"] = rid
        response.headers.update(SECURITY_HEADERS)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.update(PAGE_HEADERS)
        log.info(
            "%s %s %s %d %.1fms",
            rid, request.method, _logged_path(request), response.status_code, (time.perf_counter() - start) * 1e3,
        )  # fmt: skip
        return response

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
