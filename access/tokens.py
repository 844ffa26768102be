"""SMART Backend Services: the client's signed assertion and the access
token it earns, with PyJWT (and ``cryptography`` under it) doing every
signature.

The token request (``client_credentials``, ``private_key_jwt``) carries a
JWT the client signed with RS384 or ES384 with a key in its registered
JWKS (the header's ``kid`` names it). It must say ``iss`` = ``sub`` = the
client id, ``aud`` = our token endpoint, expire within five minutes and
carry a ``jti`` never seen before from that client. Every failure is an
OAuth error (RFC 6749 §5.2): ``invalid_request``, ``unsupported_grant_type``,
``invalid_client`` (the client is not who it says), ``invalid_grant`` (the
payer suspended the registration), ``invalid_scope``.

The access token is a JWT the service signs with its own secret (HS256,
kept in the store, so every instance verifies every other's tokens),
valid five minutes, naming the client and the scopes granted.

A CDS client (CDS Hooks 2.0, for CRD) sends no token request: each call
carries a JWT it signed (``check_cds_jwt``), checked with the same keys, the
same algorithms and the same replay table as an assertion: ``iss`` = ``sub``
a registered CDS client, ``aud`` the service called, a known ``kid``, a
``jku`` only from the registration's allow-list, ``exp`` at most five
minutes ahead, a ``jti`` never seen before (the caller remembers it).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300  # SMART: exp no more than five minutes ahead
TOKEN_SECONDS = 300
LEEWAY = 30  # seconds of clock difference tolerated between client and server
_TOKEN_ALGORITHM = "HS256"


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: its code, a description and the HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidToken(Exception):
    """A bearer token that is not ours, is expired or malformed."""


@dataclass(frozen=True)
class Client:
    """A backend client as the payer registered it."""

    id: str
    name: str
    scopes: tuple[str, ...]
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    organization: str | None = None
    active: bool = True
    # a CDS client (CRD): it calls the CDS services with a JWT of its own;
    # the jku URLs its JWT header may name (none: the registered keys only);
    # whether the service may fetch missing prefetch from its EHR
    cds_hooks: bool = False
    jku: tuple[str, ...] = ()
    fetch_prefetch: bool = False


class JwksUnavailable(Exception):
    """Nothing usable answered at a JWKS URL."""


# a JWKS URL → the JSON document published there; JwksUnavailable when none
JwksFetch = Callable[[str], Any]


def fetch_jwks_over_https(url: str) -> Any:
    """The JSON a client publishes at its JWKS URL (PyJWKClient: no
    redirects followed, five seconds at most)."""
    try:
        return jwt.PyJWKClient(url, timeout=5).fetch_data()
    except (jwt.PyJWKClientError, ValueError) as exc:
        raise JwksUnavailable(str(exc) or type(exc).__name__) from None


class KeySource:
    """A client's public keys: its registered JWKS, or the JWKS it publishes
    at a URL (its registered ``jwks_url``, or a CDS client's allowed
    ``jku``), read with ``fetch`` and kept ``REFRESH`` seconds (five
    minutes: a key the client withdraws is refused within them); a ``kid``
    not in it refetches, at most every ``COOLDOWN`` seconds, so that a
    rotated key is found without a stranger's made-up kids making this
    service hammer the client's site. What answers there must be a JWKS; a
    failed fetch or an answer that is not one is never kept."""

    REFRESH = 300.0
    COOLDOWN = 30.0

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        fetch: JwksFetch = fetch_jwks_over_https,
    ) -> None:
        self.clock = clock
        self.fetch = fetch
        self._fetched: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key(self, client: Client, kid: str, algorithm: str) -> jwt.PyJWK:
        if client.jwks is not None:
            document, where = client.jwks, "the client's registered JWKS"
        elif client.jwks_url is not None:
            document, where = self._published(client.jwks_url, kid), client.jwks_url
        else:
            raise OAuthError("invalid_client", "the client has no registered keys", 401)
        found = [k for k in document.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
        if not found:
            raise OAuthError("invalid_client", f"no key {kid!r} in {where}", 401)
        declared = found[0].get("alg")
        if declared not in (None, algorithm):
            raise OAuthError(
                "invalid_client", f"key {kid!r} is for {declared}, not {algorithm}", 401
            )
        try:
            # the header's algorithm, which the key must fit (an RSA key
            # with no "alg" would otherwise be taken for RS256)
            return jwt.PyJWK(found[0], algorithm)
        except jwt.PyJWTError as exc:
            raise OAuthError(
                "invalid_client", f"key {kid!r} does not fit {algorithm}: {exc}", 401
            ) from None

    def _published(self, url: str, kid: str) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            fetched_at, document = self._fetched.get(url, (-1e18, {}))
            known = any(
                k.get("kid") == kid for k in document.get("keys", []) if isinstance(k, dict)
            )
            stale = now - fetched_at > self.REFRESH
            if stale or (not known and now - fetched_at > self.COOLDOWN):
                try:
                    fetched = self.fetch(url)
                except JwksUnavailable as exc:
                    raise OAuthError(
                        "invalid_client", f"the client's JWKS at {url}: {exc}", 401
                    ) from None
                listed = fetched.get("keys") if isinstance(fetched, dict) else None
                if not isinstance(listed, list) or not all(isinstance(k, dict) for k in listed):
                    raise OAuthError(
                        "invalid_client",
                        f"what {url} answers is not a JWKS (no 'keys' list of keys)",
                        401,
                    )
                document = fetched
                self._fetched[url] = (now, document)
        return document


@dataclass(frozen=True)
class Grant:
    client: Client
    scopes: list[str]
    jti: str
    expires: int  # the assertion's exp: its jti is remembered until then


def check_token_request(
    form: Mapping[str, str],
    *,
    token_url: str,
    now: float,
    find_client: Callable[[str], Client | None],
    keys: KeySource,
    grant_scopes: Callable[[str, tuple[str, ...]], list[str]],
) -> Grant:
    """The grant a token request earns, or the OAuthError it gets. The caller
    remembers the jti (refusing a replay) before issuing the token."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise OAuthError(
            "unsupported_grant_type", f"grant_type {grant_type!r}: only client_credentials"
        )
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise OAuthError("invalid_request", "client_assertion is required")
    if not form.get("scope"):
        raise OAuthError("invalid_request", "scope is required")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError("invalid_client", "client_assertion is not a JWT", 401) from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise OAuthError(
            "invalid_client",
            f"alg {algorithm!r} is not accepted: use {' or '.join(ALGORITHMS)}",
            401,
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise OAuthError("invalid_client", "the assertion's header has no kid", 401)
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or unverified.get("sub") != issuer:
        raise OAuthError("invalid_client", "iss and sub must both be the client id", 401)
    client = find_client(issuer)
    if client is None:
        raise OAuthError("invalid_client", f"no client {issuer!r} is registered", 401)
    key = keys.key(client, kid, algorithm)
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=[algorithm],
            audience=token_url,
            issuer=client.id,
            leeway=LEEWAY,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise OAuthError("invalid_client", "the assertion has expired", 401) from None
    except jwt.InvalidAudienceError:
        raise OAuthError(
            "invalid_client", f"aud must be the token endpoint {token_url}", 401
        ) from None
    except jwt.PyJWTError as exc:
        raise OAuthError("invalid_client", f"the assertion does not verify: {exc}", 401) from None
    expires = claims["exp"]
    if not isinstance(expires, int) or expires > now + MAX_ASSERTION_SECONDS + LEEWAY:
        raise OAuthError(
            "invalid_client", f"exp must be at most {MAX_ASSERTION_SECONDS} seconds ahead", 401
        )
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise OAuthError("invalid_client", "jti must be a non-empty string", 401)
    if not client.active:
        raise OAuthError("invalid_grant", "the payer has suspended this client's registration")
    scopes = grant_scopes(form["scope"], client.scopes)
    if not scopes:
        raise OAuthError("invalid_scope", f"none of the scopes asked for is granted to {client.id}")
    return Grant(client, scopes, claims["jti"], expires)


@dataclass(frozen=True)
class CdsCall:
    """A CDS client's call, its JWT checked (but for the jti's replay)."""

    client: Client
    jti: str
    expires: int


def check_cds_jwt(
    token: str,
    *,
    audience: str,
    now: float,
    find_client: Callable[[str], Client | None],
    keys: KeySource,
) -> CdsCall:
    """The CDS client a call's bearer JWT proves, or InvalidToken saying
    which check failed. The caller then refuses a jti seen before."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidToken("the bearer token is not a JWT") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise InvalidToken(f"alg {algorithm!r} is not accepted: use {' or '.join(ALGORITHMS)}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the JWT's header has no kid")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or unverified.get("sub") != issuer:
        raise InvalidToken("iss and sub must both be the CDS client's id")
    client = find_client(issuer)
    if client is None or not client.cds_hooks:
        raise InvalidToken(f"no CDS client {issuer!r} is registered")
    if not client.active:
        raise InvalidToken("the payer has suspended this client's registration")
    jku = header.get("jku")
    if jku is not None:
        if jku not in client.jku:
            raise InvalidToken(f"jku {jku!r} is not one the client registered")
        # the keys the client publishes there, and those only
        client_keys = Client(client.id, client.name, client.scopes, jwks_url=str(jku))
    else:
        client_keys = client
    try:
        key = keys.key(client_keys, kid, algorithm)
    except OAuthError as exc:
        raise InvalidToken(exc.description) from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=client.id,
            leeway=LEEWAY,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the JWT has expired") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken(f"aud must be the service called, {audience}") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the JWT does not verify: {exc}") from None
    expires = claims["exp"]
    if not isinstance(expires, int) or expires > now + MAX_ASSERTION_SECONDS + LEEWAY:
        raise InvalidToken(f"exp must be at most {MAX_ASSERTION_SECONDS} seconds ahead")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise InvalidToken("jti must be a non-empty string")
    return CdsCall(client, claims["jti"], expires)


def issue(grant: Grant, secret: str, issuer: str, now: float) -> dict[str, Any]:
    """The token response (SMART Backend Services)."""
    claims = {
        "iss": issuer,
        "aud": issuer,
        "sub": grant.client.id,
        "name": grant.client.name,
        "scope": " ".join(grant.scopes),
        "iat": int(now),
        "exp": int(now) + TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(12),
    }
    return {
        "access_token": jwt.encode(claims, secret, algorithm=_TOKEN_ALGORITHM),
        "token_type": "bearer",
        "expires_in": TOKEN_SECONDS,
        "scope": claims["scope"],
    }


def verify_token(token: str, secret: str, issuer: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[_TOKEN_ALGORITHM],
            audience=issuer,
            issuer=issuer,
            options={"require": ["sub", "exp", "scope"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the access token has expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("the access token is not valid here") from None
    return claims


def load_jwks(text: str) -> dict[str, Any]:
    """A JWKS document as registered: public keys only, each with a kid."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not a JWKS: {exc}") from None
    listed = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(listed, list) or not listed:
        raise ValueError("not a JWKS: no 'keys' list")
    for key in listed:
        if isinstance(key, dict) and "d" in key:
            raise ValueError(f"key {key.get('kid')} is a private key: register the public key only")
    try:
        keys = jwt.PyJWKSet.from_dict(document).keys
    except jwt.PyJWTError as exc:
        raise ValueError(f"not a JWKS: {exc}") from None
    if len(keys) != len(listed) or any(not key.key_id for key in keys):
        raise ValueError("every key of the JWKS needs a kid and a type this service reads")
    result: dict[str, Any] = document
    return result
