"""The CRD front door: CDS Hooks 2.0 services for Da Vinci CRD.

- ``GET /cds-services`` (open, as CDS Hooks allows: it describes the
  services and holds no patient data): ``order-select`` and ``order-sign``
  for MedicationRequest, with their prefetch templates (``qpackage.crd``).
- ``POST /cds-services/{id}``: for each draft MedicationRequest of a drug a
  policy of the member's payer covers, a system action updating the order
  with the CRD ``coverage-information`` extension, and a card with the
  SMART link that launches DTR on it. The assertion is stored
  (``service.assertions``) so that ``$questionnaire-package`` takes its id as
  ``context``. A drug no policy covers: ``{"cards": []}``. An order
  re-sent carrying the extension the service made for it, when what it
  would say now is the same (date and id aside), gets no system action and
  no new assertion (CRD ``resp-35``), only the card, on the assertion the
  order carries.

Every call carries ``Authorization: Bearer <JWT>`` signed by a registered
CDS client's key (``access.tokens.check_cds_jwt``; its jti goes in the same
replay table as a backend client's assertion). ``fhirAuthorization`` is used
only to fetch prefetch the client left out, when its registration allows it,
through the ``EhrFetch`` the app is given (tests give an in-process EHR).
The JWKS at an allowed ``jku`` is read likewise through the ``JwksFetch``
the app is given, else over HTTPS, and kept five minutes
(``access.tokens.KeySource``).

The CRD configuration options a call sets (``qpackage.crd.configuration``):
``coverage-info`` false, an empty answer; ``max-cards``, the most cards.

Errors are JSON ``{"error": code, "message": text}``: 404 ``unknown-service``,
401 ``invalid-token`` (with ``WWW-Authenticate``), 400 ``invalid-request``,
412 ``prefetch-missing`` (CDS Hooks: the service cannot get what it needs).
"""

# no `from __future__ import annotations`: the routes' typed dependencies
# (Caller, Hook) are made in ``router`` and FastAPI reads them at definition

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from access.identity import Identity
from access.tokens import Client, InvalidToken, JwksFetch, KeySource, check_cds_jwt
from qpackage.crd import (
    COVERAGE_INFORMATION,
    PRESCRIBER,
    REQUIRED_PREFETCH,
    SERVICE_IDS,
    Assertion,
    ConfigurationError,
    already_said,
    assess,
    card,
    configuration,
    coverage_information,
    covers,
    prefetch_templates,
    services,
)
from qpackage.package import member_payers
from service.accounts import Accounts
from service.assertions import Assertions
from service.http import Service

# (url, access token) → the JSON the EHR's FHIR server answers; EhrUnavailable
# when it answers nothing usable
EhrFetch = Callable[[str, str], Any]


class EhrUnavailable(Exception):
    pass


class HookError(Exception):
    """A CDS call refused: its status, a code and what is wrong."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


async def hook_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HookError)
    headers = {}
    if exc.status == 401:
        service: Service = request.app.state.service
        headers["WWW-Authenticate"] = (
            f'Bearer realm="{service.base}", error="invalid_token",'
            f' error_description="{exc.message}"'
        )
    return JSONResponse({"error": exc.error, "message": exc.message}, exc.status, headers=headers)


def fetch_over_https(url: str, token: str) -> Any:
    """The EHR's answer to a FHIR read or search, with its access token."""
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise EhrUnavailable(f"{url}: {exc}") from None


class FhirAuthorization(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str


class HookContext(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None
    selections: list[str] | None = None
    draftOrders: dict[str, Any]


class HookRequest(BaseModel):
    """A CDS Hooks request, as far as this service reads it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    hook: str
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: HookContext
    prefetch: dict[str, Any] | None = None
    # CDS Hooks extensions; CRD's davinci-crd.configuration among them
    extension: Any = None


def _bad(message: str) -> HookError:
    return HookError(400, "invalid-request", message)


def router(
    service: Service,
    accounts: Accounts,
    fetch: EhrFetch | None = None,
    jwks_fetch: JwksFetch | None = None,
) -> APIRouter:
    api = APIRouter()
    catalog = service.catalog
    assertions = Assertions(service.store)
    # the keys at an allowed jku, read over HTTPS unless the app is given a fetch
    keys = KeySource(fetch=jwks_fetch) if jwks_fetch is not None else KeySource()
    discovery = services(catalog)
    templates = prefetch_templates(catalog)
    ehr = fetch or fetch_over_https

    def cds_client(service_id: str, request: Request) -> Client:
        """The registered CDS client calling, its JWT checked; then 404 for
        a service that does not exist (a stranger learns nothing)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HookError(401, "invalid-token", "send Authorization: Bearer <JWT>")
        now = time.time()
        try:
            call = check_cds_jwt(
                token.strip(),
                audience=f"{service.base}/cds-services/{service_id}",
                now=now,
                find_client=accounts.client,
                keys=keys,
            )
        except InvalidToken as exc:
            raise HookError(401, "invalid-token", str(exc)) from None
        if not accounts.first_use(call.client.id, call.jti, call.expires, now):
            raise HookError(401, "invalid-token", "this JWT's jti has been used already")
        request.state.identity = Identity.client(call.client.id, call.client.name, "")
        if service_id not in SERVICE_IDS:
            raise HookError(404, "unknown-service", f"no CDS service {service_id!r} here")
        return call.client

    async def hook_body(service_id: str, request: Request) -> HookRequest:
        body = await service.read_body(request)
        try:
            hook = HookRequest.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise _bad(f"not a CDS Hooks request: {problems}") from None
        expected = SERVICE_IDS[service_id]
        if hook.hook != expected:
            raise _bad(f"hook {hook.hook!r}: this service answers {expected!r}")
        if hook.context.draftOrders.get("resourceType") != "Bundle":
            raise _bad("context.draftOrders must be a Bundle")
        if expected == "order-select" and not hook.context.selections:
            raise _bad("context.selections must name the orders selected")
        for order in _orders(hook):
            # read for the coverage-information it carries, and kept as sent
            listed = order.get("extension", [])
            if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
                raise _bad(f"{_ref(order)}: extension must be a list of objects")
        return hook

    # a route's caller and body, checked in this order: JWT, service, body
    Caller = Annotated[Client, Depends(cds_client)]
    Hook = Annotated[HookRequest, Depends(hook_body)]

    @api.get("/cds-services")
    def discover() -> JSONResponse:
        return JSONResponse(discovery)

    def prefetched(hook: HookRequest, client: Client) -> dict[str, Any]:
        """Each prefetch the services ask, as sent, or fetched from the EHR
        when the client left it out and its registration allows it."""
        sent = dict(hook.prefetch or {})
        can_fetch = (
            client.fetch_prefetch
            and hook.fhirAuthorization is not None
            and isinstance(hook.fhirServer, str)
            and hook.fhirServer.startswith("https://")
        )
        for key, template in templates.items():
            if sent.get(key) is not None or not can_fetch:
                continue
            assert hook.fhirServer is not None and hook.fhirAuthorization is not None
            query = _resolve(template, hook)
            if query is None:
                continue
            # the codes' system|code and lists, percent-encoded as a URL needs
            url = f"{hook.fhirServer.rstrip('/')}/{quote(query, safe='/?=&')}"
            try:
                sent[key] = ehr(url, hook.fhirAuthorization.access_token)
            except EhrUnavailable:
                continue
        missing = [key for key in REQUIRED_PREFETCH if sent.get(key) is None]
        if missing:
            why = (
                "and the service may not fetch it (no fhirAuthorization or https fhirServer,"
                " or the registration does not allow it)"
                if not can_fetch
                else "and the EHR did not give it"
            )
            raise HookError(412, "prefetch-missing", f"prefetch {', '.join(missing)} missing {why}")
        return sent

    def answer(service_id: str, hook: HookRequest, client: Client, request: Request) -> Any:
        try:
            config = configuration(hook.extension)
        except ConfigurationError as exc:
            raise _bad(str(exc)) from None
        if not config.coverage_info:
            # the only kind of answer these services give, declined (CRD resp-28)
            return {"cards": []}
        prefetch = prefetched(hook, client)
        coverage = _coverage(prefetch["coverage"], service.payers)
        if coverage is None:
            return {"cards": []}
        orders = _orders(hook)
        cards, actions = [], []
        for order in orders:
            made = assess(
                catalog,
                order,
                coverage,
                payers=service.payers,
                today=service.clock(),
                # every approval on record (received by any time)
                approvals=lambda member, policy: service.store.approved_terms(
                    member, policy, "9999"
                ),
            )
            if not made:
                continue
            service.audit(request, f"CRD {service_id} {_ref(order)}", made[0].member)
            known = partial(assertions.made_for, client_id=client.id, order_ref=_ref(order))
            said = already_said(made, order, known)
            if said is not None:
                # resp-35: nothing new, so no action and no new assertion;
                # the card (below) launches DTR on the assertion the order carries
                made = said
            else:
                for assertion in made:
                    assertions.add(assertion, client.id)
                actions.append(_update(order, made))
            payer = coverage_payer(coverage)
            cards += [
                card(
                    a,
                    prefetch,
                    payer=payer,
                    launch_url=service.settings.launch_url,
                    as_of=service.clock(),
                )
                for a in made
                if a.doc_needed is not None
            ]
        reply: dict[str, Any] = {"cards": cards[: config.max_cards]}
        if actions:
            reply["systemActions"] = actions
        return reply

    def coverage_payer(coverage: dict[str, Any]) -> str:
        payer_ids, _ = member_payers(coverage, service.payers)
        names = [service.payers[p].name for p in sorted(payer_ids) if p in service.payers]
        return names[0] if names else "the payer"

    @api.post("/cds-services/{service_id}")
    async def call(service_id: str, client: Caller, hook: Hook, request: Request) -> JSONResponse:
        reply = await run_in_threadpool(answer, service_id, hook, client, request)
        return JSONResponse(reply)

    return api


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _update(order: dict[str, Any], made: list[Assertion]) -> dict[str, Any]:
    """The system action updating the order: its coverage-information
    extensions for these coverages replaced, nothing else changed (resp-37)."""
    updated = copy.deepcopy(order)
    ours = {a.coverage for a in made}
    updated["extension"] = [
        e
        for e in updated.get("extension", [])
        if not (e.get("url") == COVERAGE_INFORMATION and covers(e) in ours)
    ] + [coverage_information(a) for a in made]
    return {
        "type": "update",
        "description": f"Coverage information for {_ref(order)}",
        "resource": updated,
    }


def _resolve(template: str, hook: HookRequest) -> str | None:
    """A prefetch template's query for this call: the patient's id, and the
    prescriber's PractitionerRole from the orders' requester."""
    query = template.replace("{{context.patientId}}", hook.context.patientId)
    if PRESCRIBER in query:
        roles = [
            str(o["requester"]["reference"]).split("/", 1)[1]
            for o in _orders(hook)
            if isinstance(o.get("requester"), dict)
            and str(o["requester"].get("reference", "")).startswith("PractitionerRole/")
        ]
        if not roles:
            return None
        query = query.replace(PRESCRIBER, ",".join(roles))
    return query


def _resources(value: Any) -> list[dict[str, Any]]:
    """The resources of a prefetch value: a resource, or a search Bundle's."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in value.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]
    return [value]


def _coverage(value: Any, payers: Any) -> dict[str, Any] | None:
    """The member's Coverage naming a payer of this service, if one does."""
    for resource in _resources(value):
        if resource.get("resourceType") == "Coverage":
            matched, _ = member_payers(resource, payers)
            if matched:
                return resource
    return None


def _orders(hook: HookRequest) -> list[dict[str, Any]]:
    """The draft MedicationRequests the hook is about: those selected
    (order-select), or every draft order (order-sign)."""
    found = [
        r
        for r in _resources(hook.context.draftOrders)
        if r.get("resourceType") == "MedicationRequest"
    ]
    if hook.hook == "order-select":
        chosen = set(hook.context.selections or [])
        found = [r for r in found if _ref(r) in chosen]
    return found
