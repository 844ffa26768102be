"""CRD as the tests play it: the coverage-information extension checked
against the CRD StructureDefinition (tests/cases/crd_coverage_information.yaml,
its invariants evaluated with fhirpathpy), a CDS client's signed JWT, and a
hook request; and the CDS client's site publishing a JWKS at its allowed
``jku``, in process (no network in the tests).

The CDS client signs with the run's test key (``tests.support.callers``);
each test database registers it as a CDS client. ``JKU_KEY`` is a second
key, published only at the allowed jku, never registered.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from fhirpathpy import evaluate
from fhirpathpy.models import models

from access.tokens import Client, JwksUnavailable
from service.accounts import Accounts
from service.store import Store
from tests.support.callers import JWKS, KEY, KID
from tests.support.cases import table

SPEC = "crd_coverage_information.yaml"
CDS_CLIENT = "test-cds-ehr"
ALLOWED_JKU = "https://ehr.example.org/.well-known/jwks.json"
EHR = "https://ehr.example.org/fhir"
BASE = "http://127.0.0.1:8080"  # the service's public base in the tests
JKU_KEY = ec.generate_private_key(ec.SECP384R1())
JKU_KID = "jku-key-1"
JKU_JWKS = {
    "keys": [
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(JKU_KEY.public_key())), "kid": JKU_KID}
    ]
}


class JwksHost:
    """The CDS client's site, in process (an ``access.tokens.JwksFetch``):
    what it publishes by URL, and each URL fetched."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}
        self.fetched: list[str] = []

    def __call__(self, url: str) -> Any:
        self.fetched.append(url)
        if url not in self.published:
            raise JwksUnavailable(f"HTTP Error 404: Not Found at {url}")
        return self.published[url]


def _member_of(spec: dict[str, Any]) -> Any:
    def member_of(inputs: list[Any], url: str) -> list[bool]:
        codes = spec["value_sets"].get(url, [])
        result = []
        for concept in inputs:
            codings = concept.get("coding", []) if isinstance(concept, dict) else []
            result.append(
                any({"system": c.get("system"), "code": c.get("code")} in codes for c in codings)
            )
        return result

    return {"fn": member_of, "arity": {1: ["String"]}}


def violations(extension: dict[str, Any]) -> list[str]:
    """The CRD invariants the extension breaks, and any required element it
    lacks, value of the wrong type or code outside its required binding."""
    spec = table(SPEC)
    options = {"userInvocationTable": {"memberOf": _member_of(spec)}}
    broken = [
        key
        for key, invariant in spec["invariants"].items()
        if evaluate(
            extension,
            invariant.get("evaluated_as", invariant["expression"]),
            {},
            models["r4"],
            options,
        )
        != [True]
    ]
    parts = extension.get("extension", [])
    names = [p.get("url") for p in parts]
    broken += [f"missing {name}" for name in spec["required"] if names.count(name) != 1]
    for part in parts:
        name = part.get("url")
        value_type = spec["value_types"].get(name)
        if value_type is None or value_type not in part:
            broken.append(f"{name}: not {value_type}")
        elif name in spec["codes"] and part[value_type] not in spec["codes"][name]:
            broken.append(f"{name}: {part[value_type]} not in its value set")
    return broken


def register_cds(store: Store, client_id: str = CDS_CLIENT, **kw: Any) -> Client:
    kw.setdefault("jwks", JWKS)
    kw.setdefault("cds_hooks", True)
    kw.setdefault("jku", (ALLOWED_JKU,))
    client = Client(id=client_id, name=f"Test CDS client {client_id}", scopes=(), **kw)
    Accounts(store).add_client(client)
    return client


def cds_jwt(
    service_id: str,
    *,
    client_id: str = CDS_CLIENT,
    key: Any = KEY,
    kid: str | None = KID,
    algorithm: str = "ES384",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A CDS client's JWT for a call of ``service_id``; ``claims`` override
    or (as None) drop the usual ones."""
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{BASE}/cds-services/{service_id}",
        "iat": now,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header = {**({"kid": kid} if kid else {}), **(headers or {})}
    return jwt.encode(body, key, algorithm=algorithm, headers=header)


def medication_request(
    rid: str, coding: list[dict[str, Any]], text: str | None = None, patient: str = "example"
) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": coding} if coding else {}
    if text:
        concept["text"] = text
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "requester": {"reference": "PractitionerRole/pr1"},
        "medicationCodeableConcept": concept,
    }


def coverage(payor: dict[str, Any], patient: str = "example") -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "id": "cov1",
        "status": "active",
        "beneficiary": {"reference": f"Patient/{patient}"},
        "payor": [payor],
    }


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def hook(
    orders: list[dict[str, Any]],
    payor: dict[str, Any],
    *,
    name: str = "order-sign",
    patient: str = "example",
    prefetch: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A hook request for draft orders, with the Patient and the Coverage
    prefetched (unless ``prefetch`` says otherwise)."""
    context: dict[str, Any] = {
        "userId": "PractitionerRole/pr1",
        "patientId": patient,
        "draftOrders": searchset(*orders) | {"type": "collection"},
    }
    if name == "order-select":
        context["selections"] = [f"MedicationRequest/{orders[0]['id']}"]
    return {
        "hook": name,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch
        if prefetch is not None
        else {
            "patient": {"resourceType": "Patient", "id": patient},
            "coverage": searchset(coverage(payor, patient)),
        },
        **extra,
    }
