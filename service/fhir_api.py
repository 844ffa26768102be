"""The FHIR resources the service answers with, apart from scoring itself:
CapabilityStatement, the ``$evaluate`` OperationDefinition, search Bundles,
and the DTR ``$questionnaire-package`` operation.

Pure functions over the catalog (no HTTP here), each result validated with
``fhir.resources.R4B`` by the tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from builder.policy import NDC, RXNORM, Policy
from scoring import Catalog
from scoring.outcome import InvalidInput, Issue, operation_outcome

EVALUATE_DEFINITION = "evaluate-response"
DTR_QPACKAGE = "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/questionnaire-package"
DTR_QPACKAGE_BUNDLE = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/DTR-QPackageBundle"
DTR_QR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-questionnaireresponse"


def capability_statement(base: str, software_version: str, started: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": started,
        "kind": "instance",
        "software": {"name": "dtr-pa", "version": software_version},
        "implementation": {
            "description": "Payer DTR questionnaire package and PA scorer",
            "url": base,
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": "Questionnaire",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "url", "type": "uri"},
                            {"name": "version", "type": "token"},
                        ],
                        "operation": [
                            {"name": "questionnaire-package", "definition": DTR_QPACKAGE}
                        ],
                    },
                    {"type": "Library", "interaction": [{"code": "read"}]},
                    {
                        "type": "QuestionnaireResponse",
                        "interaction": [{"code": "read"}],
                        "operation": [
                            {
                                "name": "evaluate",
                                "definition": f"{base}/OperationDefinition/{EVALUATE_DEFINITION}",
                            }
                        ],
                    },
                    {"type": "ClaimResponse", "interaction": [{"code": "read"}]},
                    {"type": "OperationDefinition", "interaction": [{"code": "read"}]},
                ],
            }
        ],
    }


def evaluate_operation_definition(base: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationDefinition",
        "id": EVALUATE_DEFINITION,
        "url": f"{base}/OperationDefinition/{EVALUATE_DEFINITION}",
        "name": "EvaluateResponse",
        "title": "Score a completed DTR QuestionnaireResponse into a prior-authorization determination",
        "status": "active",
        "kind": "operation",
        "description": (
            "Checks the QuestionnaireResponse against the Questionnaire it names (url|version),"
            " scores it with the package's FHIRPath definitions, stores the response and the"
            " determination, and returns a Da Vinci PAS-style ClaimResponse. The body is the"
            " QuestionnaireResponse itself, or Parameters with a `response` part. The"
            " determination as JSON is at /determinations/{id}, its notice at"
            " /determinations/{id}/notice."
        ),
        "code": "evaluate",
        "resource": ["QuestionnaireResponse"],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": [
            {
                "name": "response",
                "use": "in",
                "min": 1,
                "max": "1",
                "documentation": "The completed (or partly completed) QuestionnaireResponse",
                "type": "QuestionnaireResponse",
            },
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "The determination as a ClaimResponse (outcome, reviewAction, preAuthPeriod, reasons)",
                "type": "ClaimResponse",
            },
        ],
    }


def searchset(resources: Iterable[dict[str, Any]], base: str) -> dict[str, Any]:
    entries = [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in resources
    ]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


# --- $questionnaire-package ---------------------------------------------------


def _parameters(body: dict[str, Any]) -> list[dict[str, Any]]:
    if body.get("resourceType") != "Parameters":
        raise InvalidInput(
            [Issue("invalid", "the $questionnaire-package input must be a Parameters resource")]
        )
    entries = body.get("parameter", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidInput(
            [Issue("structure", "Parameters.parameter must be a list of parameters")], 400
        )
    for entry in entries:
        if "resource" in entry and not isinstance(entry["resource"], dict):
            raise InvalidInput(
                [
                    Issue(
                        "structure", f"parameter {entry.get('name')!r}: resource must be an object"
                    )
                ],
                400,
            )
    return list(entries)


def _codings(order: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The ordered medication's codings and text (MedicationRequest, or the
    ``code`` of another request resource)."""
    concept = order.get("medicationCodeableConcept") or order.get("code") or {}
    return list(concept.get("coding", [])), concept.get("text")


def policies_for_order(catalog: Catalog, order: dict[str, Any]) -> list[tuple[Policy, str | None]]:
    """(policy, drug id) for each policy drug the order's medication matches:
    RxNorm or NDC code first; the product name (text or display) where the
    data has no code. The drug id is None for a policy of one drug (its
    Questionnaires are not per drug)."""
    codings, text = _codings(order)
    names = [text or ""] + [str(c.get("display") or "") for c in codings]
    found = []
    for policy in catalog.policies.values():
        for drug in policy.drugs:
            by_code = any(
                (c.get("system") == RXNORM and c.get("code") in drug.rxnorm)
                or (c.get("system") == NDC and _ndc_product(c.get("code", "")) in drug.ndc)
                for c in codings
            )
            by_name = any(
                name.strip() and any(known.lower() in name.lower() for known in drug.names)
                for name in names
            )
            if by_code or by_name:
                found.append((policy, drug.id if policy.per_drug else None))
                if not policy.per_drug:
                    break
    return found


def _ndc_product(code: str) -> str:
    """An NDC package code (labeler-product-package) reduced to labeler-product."""
    parts = code.split("-")
    return "-".join(parts[:2]) if len(parts) == 3 else code


def questionnaire_package(
    catalog: Catalog, libraries: dict[str, dict[str, Any]], body: dict[str, Any], base: str
) -> dict[str, Any]:
    """DTR $questionnaire-package: one collection Bundle per matching Questionnaire
    (Questionnaire first, then a draft QuestionnaireResponse and the Library)."""
    parameters = _parameters(body)
    orders = [p["resource"] for p in parameters if p.get("name") == "order" and "resource" in p]
    wanted = [p.get("valueCanonical") for p in parameters if p.get("name") == "questionnaire"]
    coverage = next((p["resource"] for p in parameters if p.get("name") == "coverage"), None)
    if not orders and not wanted and not any(p.get("name") == "context" for p in parameters):
        raise InvalidInput(
            [
                Issue(
                    "required",
                    "give at least one of 'order', 'questionnaire' and 'context' (dtr-1)",
                )
            ],
            400,
        )
    packages = []
    issues: list[Issue] = []
    for canonical in wanted:
        url, _, version = str(canonical).partition("|")
        matches = [
            p
            for key, p in (catalog.packages if version else catalog.current).items()
            if key.split("|")[0] == url and (not version or key.endswith(f"|{version}"))
        ]
        if not matches:
            issues.append(
                Issue(
                    "not-found",
                    f"no Questionnaire {canonical} is known to this service",
                    severity="warning",
                )
            )
        packages.extend(matches)
    subject = None
    for order in orders:
        subject = subject or order.get("subject")
        policies = policies_for_order(catalog, order)
        if not policies:
            _codes, text = _codings(order)
            issues.append(
                Issue(
                    "not-found",
                    f"no policy of this payer covers the ordered medication ({text or 'no text'});"
                    " no documentation is required here",
                    severity="information",
                )
            )
        for policy, drug in policies:
            packages.extend(
                p for p in catalog.current.values() if p.policy is policy and p.drug == drug
            )
    if coverage is not None and subject is None:
        subject = coverage.get("beneficiary")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for package in packages:
        q = package.questionnaire
        canonical = f"{q['url']}|{q['version']}"
        if canonical in seen:
            continue
        seen.add(canonical)
        logic = libraries[canonical]
        bundle = package_bundle(package.questionnaire, logic, canonical, subject, base)
        out.append({"name": "PackageBundle", "resource": bundle})
    if not issues:
        issues.append(
            Issue(
                "informational",
                f"{len(out)} questionnaire package(s) returned",
                severity="information",
            )
        )
    out.append({"name": "outcome", "resource": operation_outcome(issues)})
    return {"resourceType": "Parameters", "parameter": out}


def package_bundle(
    questionnaire: dict[str, Any],
    logic: dict[str, Any],
    canonical: str,
    subject: dict[str, Any] | None,
    base: str,
) -> dict[str, Any]:
    draft: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": f"draft-{uuid.uuid4().hex[:12]}",
        "meta": {"profile": [DTR_QR]},
        "questionnaire": canonical,
        "status": "in-progress",
    }
    if subject:
        draft["subject"] = subject
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [DTR_QPACKAGE_BUNDLE]},
        "type": "collection",
        "entry": [
            {"fullUrl": f"{base}/Questionnaire/{questionnaire['id']}", "resource": questionnaire},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": draft},
            {"fullUrl": f"{base}/Library/{logic['id']}", "resource": logic},
        ],
    }
