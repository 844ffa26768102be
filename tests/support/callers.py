"""Callers as the tests play them: a registered backend client that signs
its assertions (SMART Backend Services) and keeps a fresh access token, and
a person signing in to the portal.

One EC P-384 key for the whole run (ES384); each test database registers
the client with the key's public JWKS.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Generator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2 as httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from access.scopes import DTR_CLIENT_SCOPES
from access.tokens import ASSERTION_TYPE, Client
from service.accounts import Accounts
from service.store import Store, open_store

KEY = ec.generate_private_key(ec.SECP384R1())
KID = "test-key-1"
PUBLIC_JWK = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key())), "kid": KID}
JWKS = {"keys": [PUBLIC_JWK]}
CLIENT_ID = "test-ehr"
ALL_SCOPES = " ".join(DTR_CLIENT_SCOPES)
PASSWORD = "correct horse battery staple"


def register(
    store: Store, client_id: str = CLIENT_ID, scopes: str = ALL_SCOPES, **kw: Any
) -> Client:
    kw.setdefault("jwks", None if kw.get("jwks_url") else JWKS)
    client = Client(id=client_id, name=f"Test EHR {client_id}", scopes=tuple(scopes.split()), **kw)
    if Accounts(store).client(client_id) is None:
        Accounts(store).add_client(client)
    return client


def register_in(database: str, client_id: str = CLIENT_ID, scopes: str = ALL_SCOPES) -> None:
    """Register the client in a database a server process will open."""
    store = open_store(database)
    try:
        register(store, client_id, scopes)
    finally:
        store.close()


def assertion(
    client_id: str, audience: str, *, key: Any = KEY, kid: str = KID, algorithm: str = "ES384",
    **claims: Any,
) -> str:  # fmt: skip
    """A signed client assertion; ``claims`` override or (as None) drop the usual ones."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": audience, "exp": now + 240,
            "jti": uuid.uuid4().hex}  # fmt: skip
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def token_form(
    client_id: str, audience: str, scope: str = ALL_SCOPES, **claims: Any
) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(client_id, audience, **claims),
        "scope": scope,
    }


class BackendAuth(httpx.Auth):
    """A backend client's auth: a token from the token endpoint, renewed a
    little before it expires or when the server says it has (401)."""

    def __init__(
        self, client_id: str, token_endpoint: str, path: str, scope: str = ALL_SCOPES
    ) -> None:
        self.client_id = client_id
        self.token_endpoint = token_endpoint  # the assertion's audience
        self.path = path  # where the test client reaches it
        self.scope = scope
        self.token: str | None = None
        self.expires = 0.0

    def _token_request(self, url: httpx.URL) -> httpx.Request:
        return httpx.Request(
            "POST",
            url.join(self.path),
            content=urlencode(token_form(self.client_id, self.token_endpoint, self.scope)),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None or time.time() > self.expires - 30:
            reply = yield self._token_request(request.url)
            reply.read()
            body = reply.json()
            self.token, self.expires = body["access_token"], time.time() + body["expires_in"]
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def authorize(
    client: TestClient, client_id: str = CLIENT_ID, scopes: str = ALL_SCOPES
) -> TestClient:
    """The test client, calling as a registered backend client with these scopes."""
    register(client.app.state.store, client_id, scopes)  # type: ignore[attr-defined]
    configuration = client.get("/.well-known/smart-configuration").json()
    endpoint = configuration["token_endpoint"]
    # the service's routes sit at the root whatever its public base URL
    client.auth = BackendAuth(
        client_id, endpoint, endpoint.removeprefix(configuration["issuer"]), scopes
    )
    return client


def bearer(base_url: str, client_id: str = CLIENT_ID, scope: str = ALL_SCOPES) -> dict[str, str]:
    """An Authorization header from a running server's token endpoint."""
    with urllib.request.urlopen(f"{base_url}/.well-known/smart-configuration", timeout=10) as r:
        endpoint = json.loads(r.read())["token_endpoint"]
    path = urlsplit(endpoint).path
    request = urllib.request.Request(
        base_url + path,
        data=urlencode(token_form(client_id, endpoint, scope)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return {"Authorization": f"Bearer {json.loads(reply.read())['access_token']}"}


def add_user(
    store: Store, username: str, role: str = "office", organization: str | None = "clinic-a"
) -> None:
    Accounts(store).add_user(username, username.title(), role, organization, PASSWORD)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the portal's form, as a browser (no bearer token);
    the session's CSRF token."""
    client.auth = None  # type: ignore[assignment]
    page = client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text
    reply = client.post(
        "/signin",
        content=urlencode(
            {"username": username, "password": password, "csrf": csrf[1], "next": "/"}
        ),
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    portal = client.get("/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', portal.text)
    assert token, portal.text
    return token[1]


class People:
    """An office user (ann, of clinic-a) who submits and a pharmacist (pat)
    who reviews, each signed in with a browser session of their own."""

    def __init__(self, app: Any) -> None:
        store = app.state.store
        add_user(store, "ann", "office", "clinic-a")
        add_user(store, "pat", "pharmacist", None)
        self.office, self.pharmacist = TestClient(app), TestClient(app)
        self.office_csrf = sign_in(self.office, "ann")
        self.pharmacist_csrf = sign_in(self.pharmacist, "pat")

    def submit(self, response: dict[str, Any]) -> Any:
        return self.office.post(
            "/QuestionnaireResponse/$evaluate",
            content=json.dumps(response),
            headers={"content-type": "application/fhir+json", "X-CSRF-Token": self.office_csrf},
        )

    def decide(self, rid: str, **body: Any) -> Any:
        return self.pharmacist.post(
            f"/review/cases/{rid}/decision",
            content=json.dumps(body),
            headers={
                "content-type": "application/fhir+json",
                "X-CSRF-Token": self.pharmacist_csrf,
            },
        )
