"""Who may call: SMART Backend Services for systems, signed-in sessions for
people, and the check every FHIR route makes.

- ``GET /.well-known/smart-configuration`` (open): the token endpoint, the
  grant type, the client authentication and signing algorithms, the scopes.
- ``POST /auth/token``: a signed client assertion for a five-minute access
  token (:mod:`access.tokens`); OAuth errors as RFC 6749 §5.2 spells them.
- ``GET``/``POST /signin``, ``POST /signout``: the portal's sign-in. The
  session cookie is ``HttpOnly``, ``SameSite=Strict`` (and ``Secure`` behind
  https); every request it authenticates that changes something must carry
  the session's CSRF token (``X-CSRF-Token``, or the ``csrf`` form field).

Each request's caller is found once, before the rate limit (so the limit
is per caller, not per address): a bearer token is verified in process, a
session cookie looked up in the store (``service.middleware.Identify``).
Each route then takes its caller as a typed dependency,
``Annotated[Identity, requires(service, resource type, interaction)]``: no
credential is a 401 with ``WWW-Authenticate`` and an OperationOutcome, a
credential without the scope or the role a 403. The payer's own work
(review, metrics, error reports) asks ``requires(..., staff=True)``: a
signed-in person with a payer role, whatever a token's scopes — a system's
token is a 403. A route open to anyone who may or may not be signed in (a
page, the sign-out) takes ``Caller``, the caller or None.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from access.scopes import DTR_CLIENT_SCOPES, PAYER_ROLES, grant
from access.tokens import (
    ALGORITHMS,
    InvalidToken,
    KeySource,
    OAuthError,
    check_token_request,
    issue,
    verify_token,
)
from service.accounts import SESSION_SECONDS, Accounts
from service.http import AccessDenied, Service
from service.limits import RateLimiter

SESSION_COOKIE = "dtr_session"
SIGNIN_COOKIE = "dtr_signin"  # the sign-in form's own CSRF token (double submit)
TOKEN_PATH = "/auth/token"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# what a backend client may be granted: a DTR client's scopes (the error
# reports, the metrics and the review are the payer's staff's, signed in)
SUPPORTED_SCOPES = list(DTR_CLIENT_SCOPES)


VERIFIED_TOKENS_KEPT = 4096


class Authenticator:
    """Finds the caller of a request (``request.state.identity``)."""

    def __init__(self, service: Service, accounts: Accounts) -> None:
        self.service = service
        self.accounts = accounts
        self._secret: str | None = None
        # access tokens verified, by their text, with their expiry and the
        # caller they make: a client sends one token until it expires, and
        # verifying it (PyJWT) and reading its scopes was 5% of a
        # determination's time. Only its expiry can change what verifying
        # it again would say (the secret is read once too), and that is
        # checked each time; bounded by emptying it when full.
        self._verified: dict[str, tuple[float, Identity]] = {}

    @property
    def secret(self) -> str:
        if self._secret is None:
            self._secret = self.accounts.secret()
        return self._secret

    def _client(self, token: str) -> Identity:
        """The client a bearer token is (:class:`InvalidToken` if none)."""
        kept = self._verified.get(token)
        # expired as PyJWT has it: exp at or before now
        if kept is not None and kept[0] > time.time():
            return kept[1]
        claims = verify_token(token, self.secret, self.service.base)
        identity = Identity.client(claims["sub"], str(claims.get("name", "")), claims["scope"])
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.clear()
        self._verified[token] = (claims["exp"], identity)
        return identity

    async def identify(self, request: Request) -> Identity | None:
        request.state.identity = None
        request.state.credential_error = None
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                request.state.credential_error = "the Authorization header must be 'Bearer {token}'"
                return None
            try:
                identity = self._client(token.strip())
            except InvalidToken as exc:
                request.state.credential_error = str(exc)
                return None
        else:
            cookie = request.cookies.get(SESSION_COOKIE)
            if not cookie:
                return None
            found = await run_in_threadpool(self.accounts.session, cookie, time.time())
            if found is None:
                request.state.credential_error = "the session has ended: sign in again"
                return None
            user, csrf = found
            identity = Identity.user(user.username, user.name, user.role, user.organization, csrf)
        request.state.identity = identity
        return identity


async def caller(request: Request) -> Identity | None:
    """The request's caller as :class:`Authenticator` found it, or None."""
    identity: Identity | None = getattr(request.state, "identity", None)
    return identity


# a route's caller, signed in or not
Caller = Annotated[Identity | None, Depends(caller)]


def requires(resource: str, letter: str, *, staff: bool = False) -> Any:
    """The dependency of a route for ``Annotated[Identity, …]``: the caller,
    allowed ``letter`` (c r u d s) on ``resource``; with ``staff``, only a
    signed-in person with a payer role (the review, the metrics, the error
    reports), never a system."""
    return Depends(requirement(resource, letter, staff))


def requirement(
    resource: str, letter: str, staff: bool = False
) -> Callable[..., Awaitable[Identity]]:
    """A route's dependency: the caller, allowed ``letter`` on ``resource``;
    with ``staff``, a signed-in person of the payer's staff as well. A
    coroutine, so FastAPI runs it on the event loop: a plain function would
    be sent to the threadpool, a thread hop for a few comparisons."""

    async def check(request: Request, identity: Caller) -> Identity:
        service: Service = request.app.state.service
        realm = f'Bearer realm="{service.base}"'
        if identity is None:
            problem = getattr(request.state, "credential_error", None)
            if problem:
                header = f'{realm}, error="invalid_token", error_description="{problem}"'
                raise AccessDenied(401, f"not authenticated: {problem}", header)
            raise AccessDenied(
                401,
                "authentication required: a SMART Backend Services bearer token"
                " or a signed-in portal session",
                realm,
            )
        if staff and not identity.payer_staff:
            roles = " or ".join(sorted(PAYER_ROLES))
            who = f"role {identity.role}" if identity.kind == "user" else "a system's token"
            raise AccessDenied(
                403,
                f"{who} does not allow this: it is the payer's staff's work, for a person"
                f" signed in with the role {roles}, whatever a token's scopes",
            )
        if not identity.may(resource, letter):
            wanted = f"{identity.context}/{resource}.{letter}"
            held = f"role {identity.role}" if identity.kind == "user" else "the token's scopes"
            raise AccessDenied(
                403,
                f"{held} do not allow this: it needs {wanted}",
                f'{realm}, error="insufficient_scope", scope="{wanted}"',
            )
        if identity.kind == "user" and request.method in UNSAFE:
            sent = request.headers.get("x-csrf-token", "")
            if not identity.csrf or not hmac.compare_digest(sent, identity.csrf):
                raise AccessDenied(403, "the CSRF token is missing or wrong: reload the page")
        return identity

    return check


def smart_configuration(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "token_endpoint": f"{base}{TOKEN_PATH}",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": SUPPORTED_SCOPES,
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
    }


def _oauth_error(exc: OAuthError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers={"Cache-Control": "no-store"})


def router(service: Service, authenticator: Authenticator) -> APIRouter:
    api = APIRouter()
    accounts = authenticator.accounts
    keys = KeySource()
    templates = Environment(
        loader=PackageLoader("service", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    # password guessing: a few tries a minute per address, on top of the
    # service's rate limit (each try costs an Argon2 hash)
    attempts = RateLimiter(rate=0.2, burst=10)
    secure = service.base.startswith("https://")

    @api.get("/.well-known/smart-configuration")
    def configuration() -> JSONResponse:
        return JSONResponse(smart_configuration(service.base))

    def token(form: dict[str, str]) -> dict[str, Any]:
        now = time.time()
        granted = check_token_request(
            form,
            token_url=f"{service.base}{TOKEN_PATH}",
            now=now,
            find_client=accounts.client,
            keys=keys,
            grant_scopes=grant,
        )
        if not accounts.first_use(granted.client.id, granted.jti, granted.expires, now):
            raise OAuthError("invalid_client", "this assertion's jti has been used already", 401)
        return issue(granted, authenticator.secret, service.base, now)

    @api.post(TOKEN_PATH)
    async def token_endpoint(request: Request) -> JSONResponse:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return _oauth_error(
                OAuthError("invalid_request", "send application/x-www-form-urlencoded")
            )
        pairs = parse_qsl((await service.read_body(request)).decode("utf-8", "replace"))
        names = [name for name, _ in pairs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            return _oauth_error(OAuthError("invalid_request", f"repeated: {', '.join(repeated)}"))
        try:
            body = await run_in_threadpool(token, dict(pairs))
        except OAuthError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    # --- the portal's sign-in -------------------------------------------------------

    def signin_page(next_path: str, problem: str | None, status: int = 200) -> HTMLResponse:
        form_token = secrets.token_urlsafe(24)
        page = templates.get_template("signin.html.j2").render(
            next=next_path, csrf=form_token, problem=problem
        )
        response = HTMLResponse(page, status)
        response.set_cookie(
            SIGNIN_COOKIE, form_token, max_age=1800, httponly=True, samesite="strict",
            secure=secure, path="/signin",
        )  # fmt: skip
        return response

    @api.get("/signin", response_class=HTMLResponse)
    def signin_form(next: str = "/") -> HTMLResponse:
        return signin_page(_local(next), None)

    @api.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        if attempts.take(address):
            return signin_page("/", "Too many attempts: wait a minute and try again.", 429)
        form = dict(parse_qsl((await service.read_body(request)).decode("utf-8", "replace")))
        next_path = _local(form.get("next", "/"))
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        if not expected or not hmac.compare_digest(form.get("csrf", ""), expected):
            return signin_page(next_path, "The form had expired: sign in again.", 403)
        user = await run_in_threadpool(
            accounts.authenticate, form.get("username", ""), form.get("password", "")
        )
        if user is None:
            # a page telling what went wrong (the form again), not an HTTP
            # authentication challenge: 200, as the sign-in page itself
            return signin_page(next_path, "Wrong user name or password.")
        cookie, _csrf = await run_in_threadpool(accounts.open_session, user.username, time.time())
        response = RedirectResponse(next_path, 303)
        response.set_cookie(
            SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
            secure=secure, path="/",
        )  # fmt: skip
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    @api.post("/signout")
    async def signout(request: Request, identity: Caller) -> Response:
        form = dict(parse_qsl((await service.read_body(request)).decode("utf-8", "replace")))
        cookie = request.cookies.get(SESSION_COOKIE)
        if identity is None or identity.kind != "user" or not cookie:
            return RedirectResponse("/signin", 303)
        sent = form.get("csrf") or request.headers.get("x-csrf-token", "")
        if not identity.csrf or not hmac.compare_digest(sent, identity.csrf):
            raise AccessDenied(403, "the CSRF token is missing or wrong: reload the page")
        await run_in_threadpool(accounts.close_session, cookie)
        response = RedirectResponse("/signin", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return api


def _local(path: str) -> str:
    """Where to go after signing in: a path of this service, never elsewhere."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path
