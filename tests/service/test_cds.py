"""The CRD front door over HTTP (service.cds): discovery, the answer to an
order (system action and card), an order re-sent with nothing new (no
action, resp-35), the configuration options, the EHR fetched for missing
prefetch (an in-process test EHR: no network), every bad input and every JWT
check, the keys at an allowed jku (an in-process key host), and the flow
from the hook to a determination."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from qpackage.catalog import Catalog
from scoring.fill import fill
from service.app import create_app
from service.cds import EhrUnavailable
from service.settings import Settings
from tests.support.callers import KEY, KID, authorize, register
from tests.support.cases import AS_OF, base_answers, package_for
from tests.support.crd import (
    ALLOWED_JKU,
    CDS_CLIENT,
    EHR,
    JKU_JWKS,
    JKU_KEY,
    JKU_KID,
    JwksHost,
    cds_jwt,
    coverage,
    hook,
    medication_request,
    register_cds,
    searchset,
    violations,
)
from tests.support.dtr_requests import EOCCO, FHIR, MN_DHS, PACKAGE

SIGN = "dtr-pa-order-sign"
SELECT = "dtr-pa-order-select"
CO_PACK = medication_request("m1", [], "Avmapki Fakzynja Co-Pack")
MEKINIST = medication_request(
    "m2", [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1425098"}]
)
ASPIRIN = medication_request(
    "m3", [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1191"}], "aspirin"
)


class InProcessEhr:
    """The CDS client's FHIR server, in process: what it holds by query,
    and each read it was asked for (url, access token)."""

    def __init__(self) -> None:
        self.held: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, url: str, token: str) -> Any:
        self.calls.append((url, token))
        query = url.removeprefix(EHR + "/")
        if query not in self.held:
            raise EhrUnavailable(f"{url}: not found")
        return self.held[query]


@pytest.fixture()
def ehr() -> InProcessEhr:
    return InProcessEhr()


@pytest.fixture()
def jwks_host() -> JwksHost:
    return JwksHost()


@pytest.fixture()
def cds_app(catalog: Catalog, tmp_path: Path, ehr: InProcessEhr, jwks_host: JwksHost) -> Any:
    app = create_app(
        Settings(database=str(tmp_path / "store.sqlite3")),
        catalog=catalog,
        clock=lambda: AS_OF,
        ehr_fetch=ehr,
        jwks_fetch=jwks_host,
    )
    register_cds(app.state.store)
    return app


@pytest.fixture()
def client(cds_app: Any) -> TestClient:
    return TestClient(cds_app)


def call(client: TestClient, body: Any, service_id: str = SIGN, token: str | None = None) -> Any:
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(
        f"/cds-services/{service_id}",
        content=content,
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {token or cds_jwt(service_id)}",
        },
    )


def error_of(reply: Any, status: int, error: str) -> str:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error", "message"} and body["error"] == error, body
    return str(body["message"])


def parts(extension: dict[str, Any]) -> dict[str, Any]:
    return {e["url"]: next(v for k, v in e.items() if k != "url") for e in extension["extension"]}


# --- discovery and the answer ------------------------------------------------------


def test_discovery_is_open_and_lists_the_two_order_services(client: TestClient) -> None:
    reply = client.get("/cds-services")
    assert reply.status_code == 200
    listed = {s["id"]: s for s in reply.json()["services"]}
    assert {i: s["hook"] for i, s in listed.items()} == {
        SELECT: "order-select",
        SIGN: "order-sign",
    }
    assert set(listed[SIGN]["prefetch"]) == {
        "patient", "coverage", "practitionerRole", "conditions", "observations",
        "medicationRequests", "medicationStatements",
    }  # fmt: skip


def test_an_order_of_a_covered_drug_gets_the_extension_and_a_dtr_launch_card(
    client: TestClient, catalog: Catalog
) -> None:
    reply = call(client, hook([CO_PACK], EOCCO))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    (action,) = body["systemActions"]
    assert action["type"] == "update"
    updated = action["resource"]
    (extension,) = updated["extension"]
    # the order as sent, only the extension added
    assert {k: v for k, v in updated.items() if k != "extension"} == CO_PACK
    assert violations(extension) == []
    values = parts(extension)
    initial = package_for(catalog, "eocco329", "initial").questionnaire
    assert values["questionnaire"] == f"{initial['url']}|{initial['version']}"
    assert (values["pa-needed"], values["doc-needed"]) == ("auth-needed", "clinical")
    (card,) = body["cards"]
    assert card["summary"].startswith("Prior authorization needed: avutometinib")
    assert card["source"]["topic"]["code"] == "coverage-info"  # resp-5: its CRD response type
    assert "not a decision" in card["detail"]
    assert "What the record sent with the order already shows" in card["detail"]
    (link,) = card["links"]
    assert link["type"] == "smart" and link["url"] == "http://127.0.0.1:8080/"
    context = json.loads(link["appContext"])
    assert context == {
        "order": ["MedicationRequest/m1"],
        "coverage": ["Coverage/cov1"],
        "questionnaire": [values["questionnaire"]],
        "coverageAssertionId": values["coverage-assertion-id"],
    }


def test_order_select_assesses_the_orders_selected(client: TestClient) -> None:
    body = call(client, hook([CO_PACK, MEKINIST], EOCCO, name="order-select"), SELECT).json()
    assert [a["resource"]["id"] for a in body["systemActions"]] == ["m1"]


def test_a_drug_no_policy_covers_or_another_payers_member_gets_no_card_and_no_action(
    client: TestClient,
) -> None:
    assert call(client, hook([ASPIRIN], EOCCO)).json() == {"cards": []}
    assert call(client, hook([MEKINIST], EOCCO)).json() == {"cards": []}  # an MN-DHS policy
    other = {"identifier": {"system": "urn:x", "value": "OTHER"}}
    assert call(client, hook([CO_PACK], other)).json() == {"cards": []}
    assert call(client, hook([MEKINIST], MN_DHS)).json()["systemActions"]


# --- resp-35: no system action unless something is new or changed ----------------------


def assertion_rows(cds_app: Any) -> int:
    with cds_app.state.store.database() as db:
        return int(db.execute("SELECT count(*) FROM coverage_assertions")[0][0])


def test_the_same_order_sent_again_with_its_extension_gets_no_action(
    cds_app: Any, client: TestClient
) -> None:
    first = call(client, hook([CO_PACK], EOCCO)).json()
    (action,) = first["systemActions"]
    carried = action["resource"]  # the order as the EHR now holds it
    made = parts(carried["extension"][0])["coverage-assertion-id"]
    assert assertion_rows(cds_app) == 1
    for service_id, name in ((SIGN, "order-sign"), (SELECT, "order-select")):
        again = call(client, hook([carried], EOCCO, name=name), service_id)
        assert again.status_code == 200, again.text
        body = again.json()
        assert "systemActions" not in body, name
        # the card still launches DTR, on the assertion the order carries
        (card,) = body["cards"]
        assert card["uuid"] == first["cards"][0]["uuid"]
        assert json.loads(card["links"][0]["appContext"])["coverageAssertionId"] == made
    assert assertion_rows(cds_app) == 1
    # the EHR may keep the sub-extensions in another order: still the same
    reordered = json.loads(json.dumps(carried))
    reordered["extension"][0]["extension"].reverse()
    assert "systemActions" not in call(client, hook([reordered], EOCCO)).json()


def _on_cov2(order: dict[str, Any]) -> dict[str, Any]:
    body = hook([order], EOCCO)
    body["prefetch"]["coverage"]["entry"][0]["resource"]["id"] = "cov2"
    return body


def _mekinist(order: dict[str, Any]) -> dict[str, Any]:
    # the same order now for Mekinist, which an MN-DHS policy covers
    return order | {"medicationCodeableConcept": MEKINIST["medicationCodeableConcept"]}


def _set(url: str, value: str) -> Any:
    def change(order: dict[str, Any]) -> dict[str, Any]:
        changed = json.loads(json.dumps(order))
        for part in changed["extension"][0]["extension"]:
            if part["url"] == url:
                part[next(k for k in part if k != "url")] = value
        return changed

    return change


def _same(order: dict[str, Any]) -> dict[str, Any]:
    return order


# what changes in the order as the EHR holds it, the hook it is sent in, and
# the coverages its extensions speak of once updated
CHANGED = {
    # cov1's extension stays: the update replaces only the coverage it speaks of
    "another coverage": (_same, _on_cov2, ["Coverage/cov1", "Coverage/cov2"]),
    "another drug": (_mekinist, lambda o: hook([o], MN_DHS), ["Coverage/cov1"]),
    "the order says what the payer would not now": (
        _set("doc-needed", "no-doc"),
        lambda o: hook([o], EOCCO),
        ["Coverage/cov1"],
    ),
    "an assertion id the service never made": (
        _set("coverage-assertion-id", "never-made-here"),
        lambda o: hook([o], EOCCO),
        ["Coverage/cov1"],
    ),
}


@pytest.mark.parametrize("name", list(CHANGED))
def test_an_order_whose_coverage_information_is_not_what_the_payer_says_now_is_updated(
    cds_app: Any, client: TestClient, catalog: Catalog, name: str
) -> None:
    (action,) = call(client, hook([CO_PACK], EOCCO)).json()["systemActions"]
    change, send, coverages = CHANGED[name]
    carried = change(action["resource"])
    before = parts(action["resource"]["extension"][0])["coverage-assertion-id"]
    reply = call(client, send(carried))
    assert reply.status_code == 200, reply.text
    (update,) = reply.json()["systemActions"]
    extensions = update["resource"]["extension"]
    assert [parts(e)["coverage"]["reference"] for e in extensions] == coverages
    new = parts(extensions[-1])
    assert new["coverage-assertion-id"] != before and violations(extensions[-1]) == []
    assert (new["pa-needed"], new["doc-needed"]) == ("auth-needed", "clinical")
    policy = "mn-dhs-mekinist" if name == "another drug" else "eocco329"
    form = package_for(catalog, policy, "initial").questionnaire
    assert new["questionnaire"] == f"{form['url']}|{form['version']}"
    assert assertion_rows(cds_app) == 2
    # the order as updated, sent again: now nothing is new
    assert "systemActions" not in call(client, send(update["resource"])).json()
    assert assertion_rows(cds_app) == 2


def test_an_extension_made_for_another_client_or_order_is_not_ours_to_keep(
    cds_app: Any, client: TestClient
) -> None:
    (action,) = call(client, hook([CO_PACK], EOCCO)).json()["systemActions"]
    carried = action["resource"]
    # another CDS client sends the order carrying the first client's extension
    register_cds(cds_app.state.store, "another-ehr")
    reply = call(client, hook([carried], EOCCO), token=cds_jwt(SIGN, client_id="another-ehr"))
    assert reply.json()["systemActions"]
    # the same client, the extension copied onto another order
    other = carried | {"id": "m9"}
    assert call(client, hook([other], EOCCO)).json()["systemActions"]


# --- CRD configuration options ----------------------------------------------------------


def test_discovery_declares_the_configuration_options_honoured(client: TestClient) -> None:
    for listed in client.get("/cds-services").json()["services"]:
        options = listed["extension"]["davinci-crd.configuration-options"]
        assert {o["code"]: (o["type"], o["default"]) for o in options} == {
            "coverage-info": ("boolean", True),
            "max-cards": ("integer", 10),
        }
        for option in options:  # CRD dev-4: each with its four elements and a default
            assert all(isinstance(option[k], str) and option[k] for k in ("name", "description"))


TWO_ORDERS = [CO_PACK, CO_PACK | {"id": "m4"}]
# the configuration a call sets → how many cards and system actions it gets
CONFIGURED: dict[str, tuple[Any, int, int]] = {
    "none": (None, 2, 2),
    "defaults said": ({"coverage-info": True, "max-cards": 10}, 2, 2),
    "options not honoured here, ignored": ({"cost": False, "claim": False, "x-local": 3}, 2, 2),
    "coverage information declined": ({"coverage-info": False}, 0, 0),
    "one card at most": ({"max-cards": 1}, 1, 2),
    "no cards": ({"max-cards": 0}, 0, 2),
}


@pytest.mark.parametrize("name", list(CONFIGURED))
def test_the_configuration_a_call_sets_is_honoured(
    cds_app: Any, client: TestClient, name: str
) -> None:
    config, cards, actions = CONFIGURED[name]
    body = hook(TWO_ORDERS, EOCCO)
    if config is not None:
        body["extension"] = {
            "davinci-crd.requestedVersion": "2.2",
            "davinci-crd.configuration": config,
        }
    reply = call(client, body)
    assert reply.status_code == 200, reply.text
    answered = reply.json()
    assert len(answered["cards"]) == cards
    assert len(answered.get("systemActions", [])) == actions
    # declined: nothing asserted either
    assert assertion_rows(cds_app) == (0 if actions == 0 else 2)
    if cards:
        launched = [json.loads(c["links"][0]["appContext"])["order"] for c in answered["cards"]]
        assert launched == [["MedicationRequest/m1"], ["MedicationRequest/m4"]][:cards]


MISCONFIGURED = {
    "coverage-info not a boolean": (
        {"davinci-crd.configuration": {"coverage-info": "no"}},
        "coverage-info",
    ),
    "max-cards a string": ({"davinci-crd.configuration": {"max-cards": "5"}}, "max-cards"),
    "max-cards negative": ({"davinci-crd.configuration": {"max-cards": -1}}, "max-cards"),
    "max-cards true": ({"davinci-crd.configuration": {"max-cards": True}}, "max-cards"),
    "configuration not an object": ({"davinci-crd.configuration": []}, "davinci-crd.configuration"),
    "extension not an object": ("x", "extension must be a JSON object"),
}


@pytest.mark.parametrize("name", list(MISCONFIGURED))
def test_an_option_honoured_here_set_to_what_it_cannot_be_is_400(
    client: TestClient, name: str
) -> None:
    extension, said = MISCONFIGURED[name]
    body = hook([CO_PACK], EOCCO) | {"extension": extension}
    assert said in error_of(call(client, body), 400, "invalid-request")


# --- bad input --------------------------------------------------------------------


def test_an_unknown_service_is_404(client: TestClient) -> None:
    reply = call(client, hook([CO_PACK], EOCCO), "no-such-service")  # signed for it
    assert "no-such-service" in error_of(reply, 404, "unknown-service")


MALFORMED = {
    "not JSON": ("{", "not a CDS Hooks request"),
    "no context": ({"hook": "order-sign", "hookInstance": "h1"}, "context: Field required"),
    "another hook": (lambda b: b | {"hook": "order-select"}, "this service answers"),
    "draftOrders not a Bundle": (
        lambda b: b | {"context": b["context"] | {"draftOrders": {"resourceType": "List"}}},
        "draftOrders must be a Bundle",
    ),
    "an order's extension not a list of objects": (
        lambda b: hook([CO_PACK | {"extension": {"url": "x"}}], EOCCO),
        "MedicationRequest/m1: extension must be a list of objects",
    ),
    "fhirAuthorization without a token": (
        lambda b: b | {"fhirAuthorization": {"token_type": "Bearer"}},
        "fhirAuthorization.access_token",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_hook_is_400_saying_what_is_wrong(client: TestClient, name: str) -> None:
    sent, said = MALFORMED[name]
    body = sent(hook([CO_PACK], EOCCO)) if callable(sent) else sent
    assert said in error_of(call(client, body), 400, "invalid-request")


def test_order_select_without_selections_is_400(client: TestClient) -> None:
    body = hook([CO_PACK], EOCCO, name="order-select")
    del body["context"]["selections"]
    assert "selections" in error_of(call(client, body, SELECT), 400, "invalid-request")


def test_missing_prefetch_is_fetched_only_when_the_registration_allows(
    cds_app: Any, client: TestClient, ehr: InProcessEhr
) -> None:
    authorization = {
        "access_token": "ehr-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Coverage.read",
        "subject": CDS_CLIENT,
    }
    ehr.held["Patient/example"] = {"resourceType": "Patient", "id": "example"}
    ehr.held["Coverage?patient=example&status=active"] = searchset(coverage(EOCCO))
    sent = hook([CO_PACK], EOCCO, prefetch={}, fhirServer=EHR, fhirAuthorization=authorization)
    # nothing sent, and no fhirAuthorization to fetch it with
    no_token = {k: v for k, v in sent.items() if k != "fhirAuthorization"}
    assert "patient, coverage" in error_of(call(client, no_token), 412, "prefetch-missing")
    # the registration does not allow fetching: the EHR is never asked
    assert "registration" in error_of(call(client, sent), 412, "prefetch-missing")
    assert ehr.calls == []
    register_cds(cds_app.state.store, "fetching-ehr", fetch_prefetch=True)
    token = cds_jwt(SIGN, client_id="fetching-ehr")
    reply = call(client, sent, token=token)
    assert reply.status_code == 200, reply.text
    assert reply.json()["systemActions"]
    fetched = {url.removeprefix(EHR + "/") for url, _ in ehr.calls}
    assert {"Patient/example", "Coverage?patient=example&status=active"} <= fetched
    assert any(q.startswith("PractitionerRole?_id=pr1") for q in fetched)
    assert {t for _, t in ehr.calls} == {"ehr-token"}
    # what the EHR does not give cannot be had
    ehr.held.clear()
    reply = call(client, sent, token=cds_jwt(SIGN, client_id="fetching-ehr"))
    assert "the EHR did not give it" in error_of(reply, 412, "prefetch-missing")


# --- the JWT: one test per check -----------------------------------------------------

OTHER_KEY = ec.generate_private_key(ec.SECP384R1())


def _unsigned() -> str:
    now = int(time.time())
    claims = {"iss": CDS_CLIENT, "sub": CDS_CLIENT, "aud": "x", "exp": now + 60, "jti": "j"}
    return jwt.encode(claims, None, algorithm="none", headers={"kid": "test-key-1"})  # type: ignore[arg-type]


FAILING = {
    "iss not registered": (lambda: cds_jwt(SIGN, client_id="nobody"), "no CDS client"),
    "iss a backend client, not a CDS client": (
        lambda: cds_jwt(SIGN, client_id="test-ehr"),
        "no CDS client",
    ),
    "sub not iss": (lambda: cds_jwt(SIGN, sub="someone"), "iss and sub"),
    "aud another service": (lambda: cds_jwt(SIGN, aud="https://elsewhere/cds"), "aud must be"),
    "aud the other service here": (
        lambda: cds_jwt(SIGN, aud="http://127.0.0.1:8080/cds-services/dtr-pa-order-select"),
        "aud must be",
    ),
    "kid unknown": (lambda: cds_jwt(SIGN, kid="other-key"), "no key 'other-key'"),
    "no kid": (lambda: cds_jwt(SIGN, kid=None), "no kid"),
    "jku not allowed": (
        lambda: cds_jwt(SIGN, headers={"jku": "https://attacker.example/jwks.json"}),
        "is not one the client registered",
    ),
    "exp too far ahead": (lambda: cds_jwt(SIGN, exp=int(time.time()) + 3600), "at most 300"),
    "expired": (lambda: cds_jwt(SIGN, exp=int(time.time()) - 120), "expired"),
    "no exp": (lambda: cds_jwt(SIGN, exp=None), "exp"),
    "no jti": (lambda: cds_jwt(SIGN, jti=None), "jti"),
    "bad signature": (lambda: cds_jwt(SIGN, key=OTHER_KEY), "does not verify"),
    "alg none": (_unsigned, "alg 'none' is not accepted"),
    "alg HS256": (
        lambda: jwt.encode(
            {"iss": CDS_CLIENT, "sub": CDS_CLIENT}, "s" * 32, "HS256", {"kid": "test-key-1"}
        ),
        "alg 'HS256' is not accepted",
    ),
    "not a JWT": (lambda: "not-a-jwt", "not a JWT"),
}


@pytest.mark.parametrize("name", list(FAILING))
def test_a_jwt_failing_a_check_is_401(cds_app: Any, client: TestClient, name: str) -> None:
    register(cds_app.state.store)  # a backend (SMART) client, not a CDS client
    token, said = FAILING[name]
    reply = call(client, hook([CO_PACK], EOCCO), token=token())
    assert said in error_of(reply, 401, "invalid-token")
    assert reply.headers["www-authenticate"].startswith("Bearer ")


def test_no_authorization_is_401(client: TestClient) -> None:
    reply = client.post("/cds-services/" + SIGN, content=json.dumps(hook([CO_PACK], EOCCO)))
    assert "Bearer" in error_of(reply, 401, "invalid-token")


def test_a_jti_is_accepted_once(client: TestClient) -> None:
    token = cds_jwt(SIGN)
    assert call(client, hook([CO_PACK], EOCCO), token=token).status_code == 200
    reply = call(client, hook([CO_PACK], EOCCO), token=token)
    assert "used already" in error_of(reply, 401, "invalid-token")


def test_a_suspended_cds_client_is_401(cds_app: Any, client: TestClient) -> None:
    from service.accounts import Accounts

    Accounts(cds_app.state.store).set_client_active(CDS_CLIENT, False)
    assert "suspended" in error_of(call(client, hook([CO_PACK], EOCCO)), 401, "invalid-token")


def jku_jwt(**kw: Any) -> str:
    """A JWT signed with the key published at the allowed jku only."""
    kw.setdefault("key", JKU_KEY)
    kw.setdefault("kid", JKU_KID)
    return cds_jwt(SIGN, headers={"jku": ALLOWED_JKU}, **kw)


def test_a_key_published_at_an_allowed_jku_signs_and_is_fetched_once(
    client: TestClient, jwks_host: JwksHost
) -> None:
    """The key is not in the registration: it is read from the jku, and
    the set fetched is kept (the second call fetches nothing)."""
    jwks_host.published[ALLOWED_JKU] = JKU_JWKS
    for _ in range(2):
        reply = call(client, hook([CO_PACK], EOCCO), token=jku_jwt())
        assert reply.status_code == 200, reply.text
        assert reply.json()["systemActions"]
    assert jwks_host.fetched == [ALLOWED_JKU]
    # without the jku the registration's keys are read, where this key is not
    reply = call(client, hook([CO_PACK], EOCCO), token=cds_jwt(SIGN, key=JKU_KEY, kid=JKU_KID))
    assert "no key 'jku-key-1' in the client's registered JWKS" in error_of(
        reply, 401, "invalid-token"
    )


JKU_REFUSED: dict[str, tuple[Any, dict[str, Any], str]] = {
    "kid not in the fetched set": (JKU_JWKS, {"kid": "jku-key-2"}, "no key 'jku-key-2' in"),
    # a jku names where the keys are: the registration's are not read then
    "the registered key, not published there": (
        JKU_JWKS,
        {"key": KEY, "kid": KID},
        f"no key {KID!r} in {ALLOWED_JKU}",
    ),
    "signed by another key under the published kid": (
        JKU_JWKS,
        {"key": OTHER_KEY},
        "does not verify",
    ),
    "nothing answers there": (None, {}, f"the client's JWKS at {ALLOWED_JKU}: HTTP Error 404"),
    "a FHIR resource, not a JWKS": (
        {"resourceType": "Bundle"},
        {},
        f"what {ALLOWED_JKU} answers is not a JWKS",
    ),
    "a list, not a JWKS": ([JKU_JWKS], {}, f"what {ALLOWED_JKU} answers is not a JWKS"),
    "keys not a list of keys": (
        {"keys": ["k"]},
        {},
        f"what {ALLOWED_JKU} answers is not a JWKS",
    ),
}


@pytest.mark.parametrize("name", list(JKU_REFUSED))
def test_a_jwt_whose_key_the_allowed_jku_does_not_give_is_401(
    client: TestClient, jwks_host: JwksHost, name: str
) -> None:
    published, signed, said = JKU_REFUSED[name]
    if published is not None:
        jwks_host.published[ALLOWED_JKU] = published
    reply = call(client, hook([CO_PACK], EOCCO), token=jku_jwt(**signed))
    assert said in error_of(reply, 401, "invalid-token")
    assert jwks_host.fetched == [ALLOWED_JKU]


def test_a_jku_answer_that_is_not_a_jwks_is_not_kept(
    client: TestClient, jwks_host: JwksHost
) -> None:
    jwks_host.published[ALLOWED_JKU] = {"resourceType": "Bundle"}
    assert call(client, hook([CO_PACK], EOCCO), token=jku_jwt()).status_code == 401
    # the client's site fixed: the next call reads it afresh
    jwks_host.published[ALLOWED_JKU] = JKU_JWKS
    assert call(client, hook([CO_PACK], EOCCO), token=jku_jwt()).status_code == 200
    assert jwks_host.fetched == [ALLOWED_JKU, ALLOWED_JKU]


# --- the flow ---------------------------------------------------------------------


def test_hook_then_package_with_the_assertion_then_evaluate_gives_a_determination(
    cds_app: Any, client: TestClient, catalog: Catalog
) -> None:
    dtr = authorize(TestClient(cds_app))
    body = call(client, hook([CO_PACK], EOCCO)).json()
    context = json.loads(body["cards"][0]["links"][0]["appContext"])
    # DTR asks for the package with the assertion id as context
    request = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "coverage", "resource": coverage(EOCCO)},
            {"name": "context", "valueString": context["coverageAssertionId"]},
        ],
    }
    reply = dtr.post(PACKAGE, content=json.dumps(request), headers=FHIR)
    assert reply.status_code == 200, reply.text
    (bundle,) = [p["resource"] for p in reply.json()["parameter"] if p["name"] == "packagebundle"]
    form = bundle["entry"][0]["resource"]
    assert [f"{form['url']}|{form['version']}"] == context["questionnaire"]
    # another member's package names nothing with it
    other = json.loads(json.dumps(request))
    other["parameter"][0]["resource"]["beneficiary"] = {"reference": "Patient/someone-else"}
    refused = dtr.post(PACKAGE, content=json.dumps(other), headers=FHIR).json()
    assert not [p for p in refused["parameter"] if p["name"] == "packagebundle"]
    # the office fills the form DTR opened, and the payer decides
    answers = base_answers("eocco329", "initial_met")
    response = fill(package_for(catalog, "eocco329", "initial"), answers, subject="Patient/example")
    assert response["questionnaire"] == context["questionnaire"][0]
    decided = dtr.post(
        "/QuestionnaireResponse/$evaluate", content=json.dumps(response), headers=FHIR
    )
    assert decided.status_code == 201, decided.text
    record = decided.json()["id"]
    assert dtr.get(f"/determinations/{record}").json()["outcome"] == "approved"
    # ordered again while the approval runs: satisfied, nothing to document
    again = call(client, hook([CO_PACK], EOCCO)).json()
    assert again["cards"] == []
    values = parts(again["systemActions"][0]["resource"]["extension"][0])
    assert (values["pa-needed"], values["satisfied-pa-id"]) == ("satisfied", record)
    assert "questionnaire" not in values and "doc-needed" not in values
    assert violations(again["systemActions"][0]["resource"]["extension"][0]) == []


# --- registration -------------------------------------------------------------------


def test_a_cds_client_registered_by_the_cli_may_call(
    catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dtr.cli import main
    from tests.support.callers import JWKS

    jwks = tmp_path / "ehr.jwks.json"
    jwks.write_text(json.dumps(JWKS))
    db = str(tmp_path / "cds.sqlite3")

    def add(client_id: str, *extra: str) -> int:
        return main(["clients", "add", client_id, "--jwks", str(jwks), "--db", db, *extra])

    assert add("no-cds", "--jku", ALLOWED_JKU) == 2
    assert "add --cds-hooks" in capsys.readouterr().err
    assert add("plain-jku", "--cds-hooks", "--jku", "http://ehr.example.org/jwks.json") == 2
    assert "--jku must be https" in capsys.readouterr().err
    assert add("ehr", "--cds-hooks", "--jku", ALLOWED_JKU, "--fetch-prefetch") == 0
    capsys.readouterr()
    assert main(["clients", "list", "--db", db]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["id"], listed["cdsHooks"], listed["jku"], listed["fetchPrefetch"]) == (
        "ehr",
        True,
        [ALLOWED_JKU],
        True,
    )
    app = create_app(Settings(database=db), catalog=catalog, clock=lambda: AS_OF)
    reply = call(TestClient(app), hook([CO_PACK], EOCCO), token=cds_jwt(SIGN, client_id="ehr"))
    assert reply.status_code == 200 and reply.json()["systemActions"], reply.text


def test_the_card_says_what_the_record_already_shows(client: TestClient) -> None:
    """The prefetch's Patient born in 1960 and a Condition: the card says
    which sections already look met from the record (I.A, the member's age)
    and which still need the prescriber; it never says approved."""
    body = hook([CO_PACK], EOCCO)
    body["prefetch"]["patient"]["birthDate"] = "1960-04-02"
    reply = call(client, body)
    assert reply.status_code == 200, reply.text
    (card,) = reply.json()["cards"]
    detail = card["detail"]
    assert "- I.A: already looks met from the record" in detail
    assert "- I.B: needs the prescriber or a document (Is the prescriber an oncologist?)" in detail
    assert "approved" not in detail.lower()
    # a minor: the same section looks not met, still no denial
    body = hook([CO_PACK], EOCCO)
    body["prefetch"]["patient"]["birthDate"] = "2015-01-01"
    (card,) = call(client, body).json()["cards"]
    assert "- I.A: looks not met from the record" in card["detail"]
    assert "denied" not in card["detail"].lower()
