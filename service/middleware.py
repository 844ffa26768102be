"""The service's middlewares, plain ASGI, each doing one thing, in the order
``create_app`` stacks them (outermost first):

- :class:`RequestLog`: the request id (a client's, when a machine made it,
  else a new one) on the request and the reply, and one log line per
  request: id, method, route template, status, duration — never the path
  sent nor anything of the patient.
- :class:`SecurityHeaders`: no sniffing, no referrer on every reply; the
  content security policy and framing rule on pages.
- :class:`Errors`: an exception no handler turned into a reply becomes a
  500 OperationOutcome quoting the request id; the log names the exception's
  type and where it was raised, never its message (it may carry an answer).
- :class:`TrailingSlash`: a trailing slash names the same resource or
  operation, never a redirect.
- :class:`Identify`: the caller (``request.state.identity``), found once,
  before the rate limit, so the limit is per caller and not per address.
- :class:`RateLimit`: too many requests from one caller (or address) is a
  429 with ``Retry-After``.

Plain ASGI rather than ``@app.middleware("http")``: each part sees the
request and the reply's start only, leaves the body streaming, and can be
read, tested and reordered on its own.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from access.identity import Identity
from scoring.outcome import Issue
from service.auth import Authenticator
from service.http import outcome_response
from service.limits import RateLimiter

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


def _static(scope: Scope) -> bool:
    return str(scope["path"]).startswith("/static/")


def _logged_path(scope: Scope) -> str:
    """The route's template (``/determinations/{record_id}``), never the path
    sent: a client chooses its ids and segments, and may put a name there."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "(route)"))
    return "/static/…" if _static(scope) else "(no route)"


class _HttpMiddleware:
    """A middleware of HTTP requests: anything else (lifespan) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestLog(_HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = Headers(scope=scope).get("x-request-id", "")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = 500  # what the server sends when nothing was

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s %s %d %.1fms",
                rid, scope["method"], _logged_path(scope), status, (time.perf_counter() - start) * 1e3,
            )  # fmt: skip


class SecurityHeaders(_HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(SECURITY_HEADERS)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.update(PAGE_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Errors(_HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:  # too late for an OperationOutcome: the server ends the reply
                raise
            rid = str(scope.get("state", {}).get("request_id", ""))
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
            await response(scope, receive, send)


class TrailingSlash:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope["path"] = path.rstrip("/") or "/"
        await self.app(scope, receive, send)


class Identify:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _static(scope):
            await self.authenticator.identify(Request(scope))
        await self.app(scope, receive, send)


class RateLimit:
    def __init__(self, app: ASGIApp, limiter: RateLimiter | None) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.limiter is None or scope["type"] != "http" or _static(scope):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        identity: Identity | None = getattr(request.state, "identity", None)
        address = request.client.host if request.client else "unknown"
        wait = self.limiter.take(identity.key if identity else f"address/{address}")
        if not wait:
            await self.app(scope, receive, send)
            return
        response = outcome_response(
            [Issue("throttled", "too many requests from this client: retry later")], 429
        )
        response.headers["Retry-After"] = RateLimiter.retry_after(wait)
        await response(scope, receive, send)
