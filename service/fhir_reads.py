"""FHIR reads: the CapabilityStatement, OperationDefinitions, Questionnaires,
the scoring Libraries (for transparency), and the published ValueSets with
``$expand``, open to anyone (they hold no patient data).

A read by id gives the current version; a search by ``url`` (``url|version``
accepted) finds every released version, so records made under an older one
still open. ``ValueSet/$expand`` (GET and POST, and on an instance) answers
with the ValueSet and its expansion as of now: what LHC-Forms and DTR
clients call for an ``answerValueSet``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from builder.valuesets import expanded
from qpackage.adaptive import SUFFIX, adaptive_questionnaire
from qpackage.package import served
from qpackage.parameters import expand_request
from scoring.outcome import InvalidInput, Issue
from scoring.response import parse_json
from service.auth import requires
from service.conformance import (
    EVALUATE_DEFINITION,
    capability_statement,
    evaluate_operation_definition,
    searchset,
)
from service.http import FHIRResponse, Service, not_found, require_json

# The policies' ValueSets hold no patient data: anyone may read and expand
# them (each address rate-limited as every caller is), so a renderer that
# resolves an answerValueSet through the Questionnaire's terminology server
# (LHC-Forms does, for every one) loads the answer lists without a token.


def _by_canonical(
    resources: list[dict[str, Any]], url: str | None, version: str | None
) -> list[dict[str, Any]]:
    if url and "|" in url:
        url, version = url.split("|", 1)
    return [
        r
        for r in resources
        if (url is None or r["url"] == url) and (version is None or r["version"] == version)
    ]


def router(service: Service, software_version: str) -> APIRouter:
    api = APIRouter()
    catalog = service.catalog

    @api.get("/metadata")
    def metadata_endpoint() -> FHIRResponse:
        return FHIRResponse(capability_statement(service.base, software_version, service.started))

    @api.get(
        f"/OperationDefinition/{EVALUATE_DEFINITION}",
        dependencies=[requires("OperationDefinition", "r")],
    )
    def operation_definition() -> FHIRResponse:
        return FHIRResponse(evaluate_operation_definition(service.base))

    @api.get("/Questionnaire", dependencies=[requires("Questionnaire", "s")])
    def search_questionnaires(url: str | None = None, version: str | None = None) -> FHIRResponse:
        base = service.base
        every = [served(p.questionnaire, base) for p in catalog.packages.values()]
        # each form's adaptive variant (its url + "-adaptive"), made on request
        every += [
            adaptive_questionnaire(p, base, catalog.effective_period(p))
            for p in catalog.packages.values()
        ]
        return FHIRResponse(searchset(_by_canonical(every, url, version), base))

    @api.get("/Questionnaire/{qid}", dependencies=[requires("Questionnaire", "r")])
    def read_questionnaire(qid: str) -> FHIRResponse:
        if qid in service.questionnaires:
            return FHIRResponse(served(service.questionnaires[qid], service.base))
        static = service.questionnaires.get(qid.removesuffix(SUFFIX))
        if qid.endswith(SUFFIX) and static is not None:
            package = catalog.current[f"{static['url']}|{static['version']}"]
            return FHIRResponse(
                adaptive_questionnaire(package, service.base, catalog.effective_period(package))
            )
        raise not_found("Questionnaire", qid)

    @api.get("/Library/{lid}", dependencies=[requires("Library", "r")])
    def read_library(lid: str) -> FHIRResponse:
        if lid not in service.libraries:
            raise not_found("Library", lid)
        return FHIRResponse(service.libraries[lid])

    # --- ValueSets ----------------------------------------------------------------

    def expansion_of(url: str, version: str | None) -> FHIRResponse:
        if "|" in url:
            url, _, pinned = url.partition("|")
            if version is not None and version != pinned:
                raise InvalidInput(
                    [Issue("invalid", f"url names version {pinned} but valueSetVersion {version}")],
                    400,
                )
            version = pinned
        if version is None:
            found = [v for v in service.value_sets.values() if v["url"] == url]
        else:
            found = _by_canonical(list(catalog.value_sets.values()), url, version)
        if not found:
            known = sorted(v["version"] for v in catalog.value_sets.values() if v["url"] == url)
            message = f"no ValueSet {url}" + (f"|{version}" if version else "")
            message += f" (known versions: {', '.join(known)})" if known else " is published here"
            raise InvalidInput([Issue("not-found", message)], 404)
        return FHIRResponse(expanded(found[0], service.now()))

    @api.get("/ValueSet")
    def search_value_sets(url: str | None = None, version: str | None = None) -> FHIRResponse:
        every = list(catalog.value_sets.values())
        return FHIRResponse(searchset(_by_canonical(every, url, version), service.base))

    @api.get("/ValueSet/$expand")
    def expand_get(url: str | None = None, valueSetVersion: str | None = None) -> FHIRResponse:
        if not url:
            raise InvalidInput([Issue("required", "ValueSet/$expand needs a 'url'")], 400)
        return expansion_of(url, valueSetVersion)

    @api.post("/ValueSet/$expand")
    async def expand_post(request: Request) -> FHIRResponse:
        require_json(request)
        url, version = expand_request(parse_json(await service.read_body(request)))
        return expansion_of(url, version)

    @api.get("/ValueSet/{vid}/$expand")
    def expand_instance(vid: str) -> FHIRResponse:
        if vid not in service.value_sets:
            raise not_found("ValueSet", vid)
        return FHIRResponse(expanded(service.value_sets[vid], service.now()))

    @api.get("/ValueSet/{vid}")
    def read_value_set(vid: str) -> FHIRResponse:
        if vid not in service.value_sets:
            raise not_found("ValueSet", vid)
        return FHIRResponse(service.value_sets[vid])

    return api
