"""Who may call and what they see: SMART Backend Services tokens (issue and
every rejection), scopes, portal sessions and CSRF, ownership of records,
401 on every protected route, the payer's own work (review, metrics, error
reports) closed to every system whatever its scopes, the CLI's refusal of a
wildcard scope, and the rate limit per caller."""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from access import passwords
from access.tokens import Client, KeySource, OAuthError
from qpackage.catalog import Catalog
from scoring.fill import fill
from service.accounts import Accounts
from service.app import create_app
from service.settings import Settings
from tests.support.callers import (
    ALL_SCOPES,
    CLIENT_ID,
    JWKS,
    KID,
    PASSWORD,
    add_user,
    authorize,
    register,
    sign_in,
    token_form,
)
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.crd import JKU_JWKS, JKU_KID, JwksHost
from tests.support.dtr_requests import FHIR, ask, canonical

FORM = {"content-type": "application/x-www-form-urlencoded"}
TOKEN_URL = "http://127.0.0.1:8080/auth/token"
# open to anyone: the server's conformance and how to authenticate, the
# sign-in itself, and the portal page (which sends a stranger to sign in)
# and the policies' ValueSets, which hold no patient data (a renderer
# expands an answer list through the Questionnaire's terminology server)
OPEN = {
    "/metadata", "/.well-known/smart-configuration", "/auth/token", "/signin", "/signout",
    "/ValueSet", "/ValueSet/$expand", "/ValueSet/{vid}/$expand", "/ValueSet/{vid}",
    "/cds-services",  # CDS Hooks discovery: the services, no patient data
}  # fmt: skip
# pages: a stranger is sent to sign in
PAGES = {
    "/",
    "/review",
    "/review/{record_id}",
    "/impact",
    "/impact/{report_id}",
    "/impact/{report_id}.csv",
}


@pytest.fixture()
def anonymous(app: Any) -> TestClient:
    register(app.state.store)
    return TestClient(app)


def response(catalog: Catalog, subject: str = "Patient/p1", rid: str = "qr-1") -> dict[str, Any]:
    answers = base_answers("eocco329", "initial_met")
    return fill(
        package_for(catalog, "eocco329", "initial"), answers, subject=subject, response_id=rid
    )


def submit(client: TestClient, body: dict[str, Any], **headers: str) -> Any:
    return client.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(body), headers={**FHIR, **headers}
    )


def token_reply(client: TestClient, form: dict[str, str]) -> Any:
    return client.post("/auth/token", content=urlencode(form), headers=FORM)


# --- SMART Backend Services ---------------------------------------------------------


def test_smart_configuration_is_open_and_says_how(anonymous: TestClient) -> None:
    found = anonymous.get("/.well-known/smart-configuration")
    assert found.status_code == 200
    body = found.json()
    assert body["token_endpoint"] == TOKEN_URL
    assert body["grant_types_supported"] == ["client_credentials"]
    assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(body["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert "system/QuestionnaireResponse.cr" in body["scopes_supported"]
    security = anonymous.get("/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == TOKEN_URL


def test_a_token_for_a_signed_assertion_with_the_scopes_granted(anonymous: TestClient) -> None:
    # asked for more than registered: granted what the registration allows
    form = token_form(
        CLIENT_ID, TOKEN_URL, scope="system/QuestionnaireResponse.cruds system/Patient.r"
    )
    reply = token_reply(anonymous, form)
    assert reply.status_code == 200, reply.text
    assert reply.headers["cache-control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == "system/QuestionnaireResponse.cr"
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (
        anonymous.get("/ClaimResponse/none", headers=bearer).status_code == 403
    )  # no ClaimResponse.r
    # allowed (the empty body is refused for what it is, not for who sent it)
    assert submit(anonymous, {}, **bearer).status_code == 422


def test_an_rs384_client(app: Any, anonymous: TestClient) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "rsa-1"}
    register(app.state.store, "rsa-client", jwks={"keys": [public]})
    form = token_form("rsa-client", TOKEN_URL, key=key, kid="rsa-1", algorithm="RS384")
    assert token_reply(anonymous, form).status_code == 200


@pytest.fixture()
def jwks_url() -> Iterator[str]:
    """The client's JWKS, published on loopback as a client would on its site."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(JWKS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


def test_a_client_registered_with_a_jwks_url(
    app: Any, anonymous: TestClient, jwks_url: str
) -> None:
    register(app.state.store, "url-client", jwks_url=jwks_url)
    assert token_reply(anonymous, token_form("url-client", TOKEN_URL)).status_code == 200
    form = token_form("url-client", TOKEN_URL, kid="not-published")
    assert token_reply(anonymous, form).json()["error"] == "invalid_client"


ROTATED = {
    "keys": [
        {
            **json.loads(
                jwt.algorithms.ECAlgorithm.to_jwk(
                    ec.generate_private_key(ec.SECP384R1()).public_key()
                )
            ),
            "kid": "rotated",
        }
    ]
}
PUBLISHED = "https://ehr.example.org/.well-known/jwks.json"
# (seconds on the clock, what the site publishes from then, kid asked,
#  found?, fetches so far): the set is kept REFRESH seconds; an unknown kid
#  refetches only once COOLDOWN seconds have passed since the last fetch
KEPT = [
    (0, JKU_JWKS, JKU_KID, True, 1),
    (20, ROTATED, JKU_KID, True, 1),  # kept: the rotation is not seen yet
    (25, ROTATED, "rotated", False, 1),  # unknown, but fetched 25 s ago
    (31, ROTATED, "rotated", True, 2),  # unknown and 31 s on: fetched again
    (40, ROTATED, JKU_KID, False, 2),  # withdrawn, and not fetched again so soon
    (330, ROTATED, "rotated", True, 2),  # 299 s after the fetch: still kept
    (332, {"keys": []}, "rotated", False, 3),  # past five minutes: fetched, withdrawn
]


def test_a_published_jwks_is_kept_for_a_bounded_time() -> None:
    now = [0.0]
    host = JwksHost()
    keys = KeySource(clock=lambda: now[0], fetch=host)
    client = Client("site", "A client publishing its keys", (), jwks_url=PUBLISHED)
    for seconds, published, kid, found, fetches in KEPT:
        now[0], host.published[PUBLISHED] = seconds, published
        try:
            keys.key(client, kid, "ES384")
        except OAuthError as exc:
            assert not found and f"no key {kid!r} in {PUBLISHED}" in exc.description, seconds
        else:
            assert found, seconds
        assert len(host.fetched) == fetches, seconds


OTHER_KEY = ec.generate_private_key(ec.SECP384R1())
NOW = int(time.time())
REJECTIONS: list[tuple[str, dict[str, Any], str, int]] = [
    ("no grant type", {"grant_type": None}, "invalid_request", 400),
    ("authorization code", {"grant_type": "authorization_code"}, "unsupported_grant_type", 400),
    (
        "a secret, not an assertion",
        {"client_assertion_type": "client_secret"},
        "invalid_request",
        400,
    ),
    ("no assertion", {"client_assertion": None}, "invalid_request", 400),
    ("no scope", {"scope": None}, "invalid_request", 400),
    ("not a JWT", {"client_assertion": "not.a.jwt"}, "invalid_client", 401),
    ("unknown client", {"claims": {"iss": "stranger", "sub": "stranger"}}, "invalid_client", 401),
    ("sub is not the client", {"claims": {"sub": "someone-else"}}, "invalid_client", 401),
    (
        "audience of another server",
        {"claims": {"aud": "https://other.example/token"}},
        "invalid_client",
        401,
    ),
    ("expired", {"claims": {"exp": NOW - 120}}, "invalid_client", 401),
    ("expiring an hour ahead", {"claims": {"exp": NOW + 3600}}, "invalid_client", 401),
    ("no jti", {"claims": {"jti": None}}, "invalid_client", 401),
    ("no exp", {"claims": {"exp": None}}, "invalid_client", 401),
    ("no kid", {"claims": {"kid": ""}}, "invalid_client", 401),
    ("a kid not registered", {"claims": {"kid": "other"}}, "invalid_client", 401),
    ("signed with another key", {"claims": {"key": OTHER_KEY}}, "invalid_client", 401),
    (
        "a shared-secret algorithm",
        {"claims": {"key": "secret" * 8, "algorithm": "HS384"}},
        "invalid_client",
        401,
    ),
    (
        "no scope the client may have",
        {"scope": "system/Patient.r system/Claim.c"},
        "invalid_scope",
        400,
    ),
    ("a patient scope", {"scope": "patient/QuestionnaireResponse.r"}, "invalid_scope", 400),
]


@pytest.mark.parametrize(
    ("change", "error", "status"),
    [pytest.param(c, e, s, id=name) for name, c, e, s in REJECTIONS],
)
def test_a_token_request_is_refused(
    anonymous: TestClient, change: dict[str, Any], error: str, status: int
) -> None:
    claims = dict(change.get("claims", {}))
    form: dict[str, Any] = token_form(CLIENT_ID, TOKEN_URL, **claims)
    form.update({k: v for k, v in change.items() if k != "claims"})
    reply = token_reply(anonymous, {k: v for k, v in form.items() if v is not None})
    assert (reply.status_code, reply.json()["error"]) == (status, error), reply.text
    assert reply.json()["error_description"]
    assert "access_token" not in reply.json()


def test_unsigned_assertion_is_refused(anonymous: TestClient) -> None:
    unsigned = jwt.encode(
        {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": TOKEN_URL, "exp": NOW + 200, "jti": "x"},
        None,  # type: ignore[arg-type]  # PyJWT takes no key for alg "none"; its stubs say otherwise
        algorithm="none",
        headers={"kid": KID},
    )
    form = {**token_form(CLIENT_ID, TOKEN_URL), "client_assertion": unsigned}
    assert token_reply(anonymous, form).json()["error"] == "invalid_client"


def test_a_replayed_assertion_is_refused(anonymous: TestClient) -> None:
    form = token_form(CLIENT_ID, TOKEN_URL)
    assert token_reply(anonymous, form).status_code == 200
    again = token_reply(anonymous, form)
    assert (again.status_code, again.json()["error"]) == (401, "invalid_client")
    assert "jti" in again.json()["error_description"]


def test_a_suspended_client_gets_no_token(app: Any, anonymous: TestClient) -> None:
    Accounts(app.state.store).set_client_active(CLIENT_ID, False)
    reply = token_reply(anonymous, token_form(CLIENT_ID, TOKEN_URL))
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_grant")
    Accounts(app.state.store).set_client_active(CLIENT_ID, True)
    assert token_reply(anonymous, token_form(CLIENT_ID, TOKEN_URL)).status_code == 200


def test_token_request_format_errors(anonymous: TestClient) -> None:
    as_json = anonymous.post("/auth/token", json=token_form(CLIENT_ID, TOKEN_URL))
    assert as_json.json()["error"] == "invalid_request"
    form = token_form(CLIENT_ID, TOKEN_URL)
    repeated = urlencode(form) + "&scope=system/Questionnaire.r"
    reply = anonymous.post("/auth/token", content=repeated, headers=FORM)
    assert reply.json() == {"error": "invalid_request", "error_description": "repeated: scope"}


# --- every protected route ----------------------------------------------------------


def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every API route, through the routers ``create_app`` includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router
        if included is not None:
            yield from api_routes(included.routes)


def protected_routes(app: Any) -> list[tuple[str, str]]:
    routes = []
    for route in api_routes(app.routes):
        if route.path not in OPEN | PAGES:
            path = route.path.replace("{", "").replace("}", "")  # any id will do
            routes += [(method, path) for method in sorted(route.methods or ())]
    return routes


def test_every_fhir_route_needs_credentials(app: Any, anonymous: TestClient) -> None:
    routes = protected_routes(app)
    assert len(routes) >= 17  # reads, operations, records, error reports
    for method, path in routes:
        reply = anonymous.request(method, path, content=b"{}", headers=FHIR)
        assert reply.status_code == 401, (method, path, reply.text)
        if path.startswith("/cds-services/"):  # CDS Hooks: its own JSON errors (test_cds.py)
            assert reply.json()["error"] == "invalid-token"
            assert reply.headers["www-authenticate"].startswith('Bearer realm="http://127.0.0.1')
            continue
        assert reply.headers["www-authenticate"] == 'Bearer realm="http://127.0.0.1:8080"'
        outcome = reply.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "login"
    for path in PAGES:
        sent = anonymous.get(re.sub(r"{\w+}", "x", path), follow_redirects=False)
        assert sent.status_code == 303 and sent.headers["location"].startswith("/signin?next=")


def test_a_token_not_ours_or_expired_is_401(app: Any, anonymous: TestClient) -> None:
    secret = Accounts(app.state.store).secret()
    claims = {"iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080", "sub": CLIENT_ID,
              "scope": ALL_SCOPES, "exp": NOW - 10}  # fmt: skip
    for token, problem in (
        (jwt.encode(claims, secret, algorithm="HS256"), "expired"),
        (jwt.encode({**claims, "exp": NOW + 200}, "x" * 64, algorithm="HS256"), "not valid"),
        ("garbage", "not valid"),
    ):
        reply = anonymous.get("/Questionnaire", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
        assert problem in reply.json()["issue"][0]["diagnostics"]
    basic = anonymous.get("/Questionnaire", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401


def test_a_token_accepted_before_is_refused_once_it_expires(
    app: Any, anonymous: TestClient
) -> None:
    """The service keeps the tokens it has verified; a kept one is refused
    from its expiry on, as one never seen is."""
    secret = Accounts(app.state.store).secret()
    expires = int(time.time()) + 2
    claims = {"iss": "http://127.0.0.1:8080", "aud": "http://127.0.0.1:8080", "sub": CLIENT_ID,
              "scope": ALL_SCOPES, "exp": expires}  # fmt: skip
    header = {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}
    assert anonymous.get("/Questionnaire", headers=header).status_code == 200
    assert anonymous.get("/Questionnaire", headers=header).status_code == 200  # kept
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    reply = anonymous.get("/Questionnaire", headers=header)
    assert reply.status_code == 401
    assert "expired" in reply.json()["issue"][0]["diagnostics"]


def test_a_scope_too_narrow_is_403(app: Any, catalog: Catalog) -> None:
    reader = authorize(TestClient(app), "forms-only", "system/Questionnaire.rs")
    assert reader.get("/Questionnaire/eocco329-initial").status_code == 200
    refused = submit(reader, response(catalog))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert "system/QuestionnaireResponse.c" in refused.json()["issue"][0]["diagnostics"]
    assert reader.get("/Library/eocco329-prepopulation").status_code == 403


def test_the_value_sets_are_open_to_anyone(anonymous: TestClient) -> None:
    """The policies' answer lists hold no patient data: read and expanded
    without a token, as a renderer does through the Questionnaire's
    terminology server; an unknown one is a 404 OperationOutcome."""
    read = anonymous.get("/ValueSet/eocco329-diagnosis")
    assert read.status_code == 200, read.text
    url = read.json()["url"]
    expanded = anonymous.get("/ValueSet/$expand", params={"url": url})
    assert expanded.status_code == 200, expanded.text
    assert expanded.json()["expansion"]["contains"]
    posted = anonymous.post(
        "/ValueSet/$expand",
        content=json.dumps(
            {"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": url}]}
        ),
        headers=FHIR,
    )
    assert posted.status_code == 200, posted.text
    unknown = anonymous.get("/ValueSet/$expand", params={"url": url + "-none"})
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    # a body past the limit is refused before it is read, naming the limit
    oversize = anonymous.post(
        "/ValueSet/$expand", content=b"{" + b" " * 2_000_000 + b"}", headers=FHIR
    )
    assert oversize.status_code == 413, oversize.text
    assert oversize.json()["resourceType"] == "OperationOutcome"


# --- ownership ----------------------------------------------------------------------


def test_a_system_reads_only_what_it_submitted(app: Any, catalog: Catalog) -> None:
    first = authorize(TestClient(app), "ehr-a")
    second = authorize(TestClient(app), "ehr-b")
    sent = response(catalog, subject="Patient/owned")
    created = submit(first, sent)
    assert created.status_code == 201
    rid = created.json()["id"]
    for path in (f"/ClaimResponse/{rid}", f"/QuestionnaireResponse/{rid}",
                 f"/determinations/{rid}", f"/determinations/{rid}/notice"):  # fmt: skip
        assert first.get(path).status_code == 200
        hidden = second.get(path)
        assert hidden.status_code == 404 and "owned" not in hidden.text
    # a copy of the first client's response is a record of the second's own
    copy = submit(second, sent)
    assert copy.status_code == 201 and copy.json()["id"] != rid
    assert rid not in copy.text + str(dict(copy.headers))
    # resubmitted by its owner, the same record
    assert submit(first, sent).json()["id"] == rid


def test_a_pended_context_of_another_caller_reveals_nothing(app: Any, catalog: Catalog) -> None:
    first = authorize(TestClient(app), "ehr-a")
    second = authorize(TestClient(app), "ehr-b")
    package = package_for(catalog, "eocco329", "initial")
    partial = fill(package, {"birth_date": "1960-01-01"}, subject="Patient/p1")
    context = submit(first, partial).json()["id"]
    url = f"{package.questionnaire['url']}|{package.questionnaire['version']}"
    own = ask(first, canonical(url), {"name": "context", "valueString": context})
    theirs = ask(second, canonical(url), {"name": "context", "valueString": context})
    assert "1960-01-01" in json.dumps(own.json())
    assert "1960-01-01" not in json.dumps(theirs.json())
    assert f"context {context}" in json.dumps(theirs.json())  # as unknown as a made-up one


def test_an_office_reads_its_organizations_requests(app: Any, catalog: Catalog) -> None:
    store = app.state.store
    for name, role, organization in (("ann", "office", "clinic-a"), ("ben", "office", "clinic-a"),
                                     ("cat", "office", "clinic-b"), ("pat", "pharmacist", None)):  # fmt: skip
        add_user(store, name, role, organization)
    sessions = {name: TestClient(app) for name in ("ann", "ben", "cat", "pat")}
    csrf = {name: sign_in(client, name) for name, client in sessions.items()}
    created = submit(sessions["ann"], response(catalog), **{"X-CSRF-Token": csrf["ann"]})
    assert created.status_code == 201
    rid = created.json()["id"]
    assert sessions["ben"].get(f"/determinations/{rid}").status_code == 200  # same practice
    assert sessions["cat"].get(f"/determinations/{rid}").status_code == 404  # another
    assert sessions["pat"].get(f"/determinations/{rid}").status_code == 200  # the payer's
    # a pharmacist reviews; submitting is the office's
    refused = submit(sessions["pat"], response(catalog), **{"X-CSRF-Token": csrf["pat"]})
    assert refused.status_code == 403 and "role pharmacist" in refused.text
    trail = store.audit_trail("ref:Patient/p1")
    assert {e.who.split(" from ")[0] for e in trail} == {
        "user ben (office, organization/clinic-a)",
        "user pat (pharmacist)",
    }


# --- sessions and CSRF ----------------------------------------------------------------


def test_sign_in_sessions_and_csrf(app: Any, catalog: Catalog) -> None:
    add_user(app.state.store, "ann")
    browser = TestClient(app)
    assert browser.get("/", follow_redirects=False).headers["location"] == "/signin?next=%2F"
    page = browser.get("/signin?next=/%3Fq%3Deocco329-initial")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]

    def sign_in_with(password: str, csrf: str = token) -> Any:
        form = {
            "username": "ann",
            "password": password,
            "csrf": csrf,
            "next": "/?q=eocco329-initial",
        }
        return browser.post(
            "/signin", content=urlencode(form), headers=FORM, follow_redirects=False
        )

    wrong = sign_in_with("not the password")
    assert wrong.status_code == 200 and "Wrong user name or password" in wrong.text
    assert "dtr_session" not in wrong.headers.get("set-cookie", "")
    assert sign_in_with(PASSWORD, csrf="forged").status_code == 403
    page = browser.get("/signin")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    signed = sign_in_with(PASSWORD, token)
    assert signed.status_code == 303 and signed.headers["location"] == "/?q=eocco329-initial"
    cookie = signed.headers["set-cookie"]
    assert "dtr_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    portal = browser.get("/")
    assert portal.status_code == 200 and "Ann (office" in portal.text
    csrf = portal.text.split('name="csrf-token" content="')[1].split('"')[0]

    # reads need no CSRF token; a change does
    assert browser.get("/Questionnaire/eocco329-initial").status_code == 200
    forged = submit(browser, response(catalog))
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert submit(browser, response(catalog), **{"X-CSRF-Token": "guess"}).status_code == 403
    assert submit(browser, response(catalog), **{"X-CSRF-Token": csrf}).status_code == 201

    # signing out needs the token too, then ends the session for good
    session = browser.cookies.get("dtr_session")
    assert session
    assert browser.post("/signout", content="csrf=guess", headers=FORM).status_code == 403
    out = browser.post("/signout", content=f"csrf={csrf}", headers=FORM, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/signin"
    replayed = TestClient(app, cookies={"dtr_session": session})
    ended = replayed.get("/Questionnaire/eocco329-initial")
    assert ended.status_code == 401 and "session has ended" in ended.text


def test_sign_in_goes_only_to_this_service(app: Any) -> None:
    add_user(app.state.store, "ann")
    browser = TestClient(app)
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        page = browser.get("/signin", params={"next": target})
        assert 'name="next" value="/"' in page.text


def test_no_password_or_token_in_the_log(
    app: Any, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dtr.service")
    add_user(app.state.store, "ann")
    browser = TestClient(app)
    sign_in(browser, "ann")
    client = authorize(TestClient(app))
    submit(client, response(catalog))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /signin 303" in text and "POST /auth/token 200" in text
    token = client.auth.token  # type: ignore[union-attr]
    assert PASSWORD not in text and token and token not in text
    assert str(browser.cookies.get("dtr_session")) not in text


# --- the rate limit, per caller ------------------------------------------------------


def test_the_rate_limit_is_per_caller(catalog: Catalog, tmp_path: Path) -> None:
    settings = Settings(database=str(tmp_path / "rl.sqlite3"), rate_limit=0.01, rate_burst=4)
    app = create_app(settings, catalog=catalog, clock=lambda: AS_OF)
    busy = authorize(TestClient(app), "busy")  # its token request: one of the address's four
    quiet = authorize(TestClient(app), "quiet")  # and another
    codes = [busy.get("/Questionnaire/eocco329-initial").status_code for _ in range(6)]
    assert codes[:4] == [200] * 4 and codes[4:] == [429, 429]
    # the same address, another caller: its own allowance
    assert quiet.get("/Questionnaire/eocco329-initial").status_code == 200


# --- no patient data in the log ---------------------------------------------------------

NAME, BORN, MEMBER = "Quackenbush", "1968-04-12", "Patient/Quackenbush-77"


def test_no_error_class_writes_patient_data_to_the_log(
    catalog: Catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each error class provoked with a name, a birth date and a member in
    the body, the path, the query and the headers: the log has none of them."""
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        database=str(tmp_path / "log.sqlite3"), max_body=5_000, max_response_body=60_000,
        rate_limit=0.001, rate_burst=40, body_timeout=0.2,
    )  # fmt: skip
    app = create_app(settings, catalog=catalog, clock=lambda: AS_OF)
    client = authorize(TestClient(app))
    narrow = authorize(TestClient(app), "narrow", "system/Questionnaire.r")
    stranger = TestClient(app)
    identifying = response(catalog, subject=MEMBER)
    identifying["item"][0]["text"] = f"{NAME} born {BORN}"
    unfit = {
        **identifying,
        "item": [{"linkId": f"{NAME}-{BORN}", "answer": [{"valueString": NAME}]}],
    }

    def slow_body() -> Iterator[bytes]:
        yield b'{"resourceType": "QuestionnaireResponse", "id": "' + NAME.encode()
        time.sleep(0.5)
        yield b'"}'

    statuses = [
        submit(client, {"resourceType": NAME, "birthDate": BORN}).status_code,  # 400/422
        client.post(
            "/QuestionnaireResponse/$evaluate", content=f"{{{NAME} {BORN}".encode(), headers=FHIR
        ).status_code,  # 400 not JSON
        stranger.get(f"/QuestionnaireResponse/{NAME}-{BORN}?member={MEMBER}").status_code,  # 401
        narrow.get(f"/ClaimResponse/{NAME}?born={BORN}").status_code,  # 403
        client.get(f"/determinations/{NAME}-{BORN}").status_code,  # 404 record
        client.get(f"/Patient/{NAME}/{BORN}").status_code,  # 404 route
        client.post(
            "/QuestionnaireResponse/$evaluate", content=slow_body(), headers=FHIR
        ).status_code,  # 408
        client.post(
            "/Questionnaire/$questionnaire-package",
            content=json.dumps({"resourceType": "Parameters", "name": NAME * 600, "born": BORN}),
            headers=FHIR,
        ).status_code,  # 413
        client.post(
            "/QuestionnaireResponse/$evaluate",
            content=f"{NAME} {BORN}",
            headers={"content-type": "text/plain"},
        ).status_code,  # 415
        submit(client, unfit).status_code,  # 422
        client.get(f"/nothing/{NAME}", headers={"X-Request-ID": f"{NAME}-{BORN}"}).status_code,
    ]
    assert {400, 401, 403, 404, 408, 413, 415, 422} <= set(statuses), statuses
    while client.get(f"/Questionnaire/{NAME}?b={BORN}").status_code != 429:
        pass  # the burst spent: 429
    # every logger but the test's own HTTP client's
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in server_side)
    assert "429" in logged and "/determinations/{record_id} 404" in logged
    for secret in (NAME, BORN, MEMBER):
        assert secret not in logged, secret


def test_records_of_the_previous_release_belong_to_nobody_but_the_payer(
    catalog: Catalog, tmp_path: Path
) -> None:
    """A database of the previous release (schema 4, records without an
    owner) migrates on start; its records are the payer's pharmacists' to
    read, no client's or office's."""
    import sqlite3
    from contextlib import closing

    from service.migrations import LATEST, MIGRATIONS
    from service.store import SQLiteStore

    path = tmp_path / "release-4.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for migration in MIGRATIONS[:4]:
            for statement in migration.statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (migration.version,))
        db.commit()
    app = create_app(Settings(database=str(tmp_path / "scratch.sqlite3")), catalog=catalog,
                     clock=lambda: AS_OF)  # fmt: skip
    record = authorize(TestClient(app)).post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response(catalog)), headers=FHIR
    )
    rid = record.json()["id"]
    stored = app.state.store.get(rid)
    with closing(sqlite3.connect(path)) as db:  # the record as release 4 stored it
        row = stored.row()[:14]  # the columns of schema 4
        db.execute(f"INSERT INTO determinations VALUES ({', '.join('?' * len(row))})", row)
        db.commit()

    assert SQLiteStore(path).migrated == (4, LATEST)
    old = create_app(Settings(database=str(path)), catalog=catalog, clock=lambda: AS_OF)
    assert authorize(TestClient(old)).get(f"/determinations/{rid}").status_code == 404
    add_user(old.state.store, "pat", "pharmacist", None)
    pharmacist = TestClient(old)
    sign_in(pharmacist, "pat")
    assert pharmacist.get(f"/determinations/{rid}").json()["outcome"] == "approved"


# --- the payer's own work: a signed-in pharmacist's, never a system's -----------------------

# every route of the review, the metrics, the error reports and the impact
# reports (the first test below checks none is missing), with what a
# pharmacist gets from it (no impact report is kept here: its pages are 404s)
STAFF_PREFIXES = ("/review", "/metrics", "/questionnaire-errors", "/impact")
PEND = {"action": "pend", "request": "the chart notes", "rationale": "More to read first."}
STAFF_CALLS: list[tuple[str, str, str, int]] = [
    ("GET", "/review/queue", "", 200),
    ("GET", "/review/decided", "", 200),
    ("GET", "/review/pends", "", 200),
    ("GET", "/review/cases/{record_id}", "", 200),
    ("GET", "/metrics", "?period=2026-11", 200),
    ("GET", "/metrics", "?period=2026-11&format=csv", 200),
    ("GET", "/metrics/chart", "?period=2026-11", 200),
    ("GET", "/questionnaire-errors", "", 200),
    ("GET", "/review", "", 200),
    ("GET", "/review/{record_id}", "", 200),
    ("POST", "/review/cases/{record_id}/decision", "", 200),
    ("POST", "/review/{record_id}", "", 303),
    ("GET", "/impact", "", 200),
    ("GET", "/impact/{report_id}", "", 404),
    ("GET", "/impact/{report_id}.csv", "", 404),
]
# what a backend client could be registered for, and still reads no queue
SYSTEM_SCOPES = {
    "review-bot": f"{ALL_SCOPES} system/ClaimResponse.rus system/OperationOutcome.rs"
    " system/MeasureReport.r",
    "wildcard": "system/*.*",
}


def staff_call(client: TestClient, method: str, path: str, query: str, csrf: str) -> Any:
    if method == "GET":
        return client.get(path + query, follow_redirects=False)
    if path.startswith("/review/cases/"):
        headers = {**FHIR, "X-CSRF-Token": csrf}
        return client.post(path, content=json.dumps(PEND), headers=headers)
    return client.post(path, data={**PEND, "csrf": csrf}, follow_redirects=False)


def catalog_url(catalog: Catalog) -> str:
    questionnaire = package_for(catalog, "eocco329", "initial").questionnaire
    return f"{questionnaire['url']}|{questionnaire['version']}"


def test_the_staff_calls_cover_every_staff_route(app: Any) -> None:
    routes = {
        (method, route.path)
        for route in api_routes(app.routes)
        if route.path.startswith(STAFF_PREFIXES)
        for method in route.methods or ()
    }
    assert routes == {(method, path) for method, path, _, _ in STAFF_CALLS}


def test_review_metrics_and_error_reports_are_a_signed_in_pharmacists(
    app: Any, catalog: Catalog
) -> None:
    """A backend client registered for ClaimResponse search and update (or
    for everything) reads no queue, no case, no metrics, no error report and
    decides nothing; nor does an office. The pharmacist does all of it."""
    from tests.review.test_review import request as held_request

    store = app.state.store
    add_user(store, "ann", "office", "clinic-a")
    add_user(store, "pat", "pharmacist", None)
    office, pharmacist = TestClient(app), TestClient(app)
    office_csrf, pharmacist_csrf = sign_in(office, "ann"), sign_in(pharmacist, "pat")
    held = []
    for rid in ("held-1", "held-2"):  # one decided by the API, one by the page
        created = submit(office, held_request(catalog, 90, rid), **{"X-CSRF-Token": office_csrf})
        assert created.status_code == 201, created.text
        held.append(created.json()["id"])
    queued = pharmacist.get("/review/queue").json()
    assert {case["id"] for case in queued["cases"]} == set(held)

    # a DTR client still reports errors; reading them is not its business
    reporter = authorize(TestClient(app), "reporter")
    report = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "questionnaire", "valueCanonical": catalog_url(catalog)},
            {"name": "operationOutcome", "resource": {"resourceType": "OperationOutcome",
             "issue": [{"severity": "error", "code": "processing", "diagnostics": "I.D"}]}},
        ],
    }  # fmt: skip
    logged = reporter.post(
        "/Questionnaire/$log-questionnaire-errors", content=json.dumps(report), headers=FHIR
    )
    assert logged.status_code == 200, logged.text

    refused = {
        name: authorize(TestClient(app), name, scopes) for name, scopes in SYSTEM_SCOPES.items()
    }
    refused["office"] = office
    for who, client in refused.items():
        csrf = office_csrf if who == "office" else ""
        for method, template, query, _ in STAFF_CALLS:
            path = template.replace("{record_id}", held[0])
            reply = staff_call(client, method, path, query, csrf)
            assert reply.status_code == 403, (who, method, path, reply.text)
            outcome = reply.json()
            assert outcome["resourceType"] == "OperationOutcome", (who, path)
            assert outcome["issue"][0]["code"] == "forbidden"
            assert "Jane Example" not in reply.text and "EX123456" not in reply.text
    assert (
        "a system's token"
        in staff_call(
            refused["review-bot"], "POST", f"/review/cases/{held[0]}/decision", "", ""
        ).text
    )
    # nothing was decided by any of them
    assert pharmacist.get("/review/queue").json()["total"] == 2

    for method, template, query, status in STAFF_CALLS:
        rid = held[1] if template == "/review/{record_id}" and method == "POST" else held[0]
        reply = staff_call(pharmacist, method, template.replace("{record_id}", rid), query,
                           pharmacist_csrf)  # fmt: skip
        assert reply.status_code == status, (method, template, reply.text)
    assert pharmacist.get("/questionnaire-errors").json()["total"] == 1
    assert pharmacist.get("/review/queue").json()["total"] == 0  # both decided
    assert {store.get(rid).reviewer for rid in held} == {"user pat (pharmacist)"}


def test_the_cli_refuses_a_wildcard_scope_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dtr.cli import main

    jwks = tmp_path / "client.jwks.json"
    jwks.write_text(json.dumps(JWKS))
    db = str(tmp_path / "clients.sqlite3")

    def add(client_id: str, *extra: str) -> int:
        return main(["clients", "add", client_id, "--jwks", str(jwks), "--db", db, *extra])

    for n, scope in enumerate(("system/*.*", "system/*.rs", "system/ClaimResponse.*")):
        assert add(f"wide-{n}", "--scope", "system/Questionnaire.rs", "--scope", scope) == 2
        error = capsys.readouterr().err
        assert f"refused: {scope} is a wildcard" in error and "--allow-wildcard" in error
    assert main(["clients", "list", "--db", db]) == 0
    assert capsys.readouterr().out == ""  # none registered
    assert add("narrow", "--scope", "system/ClaimResponse.rus") == 0
    assert add("wide", "--scope", "system/*.*", "--allow-wildcard") == 0
    capsys.readouterr()
    assert main(["clients", "list", "--db", db]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["id"], c["scopes"]) for c in listed] == [
        ("narrow", "system/ClaimResponse.rus"),
        ("wide", "system/*.*"),
    ]


def test_passwords_are_hashed_with_argon2id_at_rfc_9106_cost(
    product_password_hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product's hasher, not the cheap one the other tests use: Argon2id
    with RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes)."""
    monkeypatch.setattr(passwords, "_HASHER", product_password_hasher)
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify(hashed, "correct horse battery")
    assert not passwords.verify(hashed, "correct horse battery!")
    assert not passwords.verify(None, "correct horse battery")


def test_the_cli_disables_enables_and_resets_a_portal_user(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dtr users disable | enable | reset-password` on the service's store: a
    disabled user cannot sign in and their open session ends at once; enabled
    again, they can; a reset password replaces the old one and ends the
    session opened with it. An unknown user is exit 2, nothing changed."""
    from dtr.cli import main

    db = app.state.service.settings.database
    add_user(app.state.store, "ann")

    def sign_in(password: str) -> TestClient | None:
        browser = TestClient(app)
        page = browser.get("/signin")
        token = page.text.split('name="csrf" value="')[1].split('"')[0]
        form = {"username": "ann", "password": password, "csrf": token, "next": "/"}
        signed = browser.post("/signin", content=urlencode(form), headers=FORM,
                              follow_redirects=False)  # fmt: skip
        return browser if signed.status_code == 303 else None

    def live(browser: TestClient) -> bool:
        return browser.get("/Questionnaire/eocco329-initial").status_code == 200

    session = sign_in(PASSWORD)
    assert session is not None and live(session)
    assert main(["users", "disable", "ann", "--db", db]) == 0
    assert "ann disabled" in capsys.readouterr().out
    assert not live(session) and sign_in(PASSWORD) is None
    assert main(["users", "enable", "ann", "--db", db]) == 0
    session = sign_in(PASSWORD)
    assert session is not None and live(session)

    assert main(["users", "reset-password", "ann", "--db", db]) == 0
    new = capsys.readouterr().out.split("password (shown once): ")[1].strip()
    assert not live(session) and sign_in(PASSWORD) is None
    assert sign_in(new) is not None

    for action in ("disable", "enable", "reset-password"):
        assert main(["users", action, "nobody", "--db", db]) == 2
        assert "no user 'nobody'" in capsys.readouterr().err
    assert [u.username for u in Accounts(app.state.store).users()] == ["ann"]
