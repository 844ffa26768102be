"""What the service says about itself: the CapabilityStatement (readable
without credentials), the ``$evaluate`` OperationDefinition, and search
Bundles.

Pure functions (no HTTP here), each result validated with
``fhir.resources.R4B`` by the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EVALUATE_DEFINITION = "evaluate-response"
DTR_QPACKAGE = "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/questionnaire-package"
DTR_LOG_ERRORS = "http://hl7.org/fhir/us/davinci-dtr/OperationDefinition/log-questionnaire-errors"
VALUESET_EXPAND = "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
SDC_NEXT_QUESTION = "http://hl7.org/fhir/uv/sdc/OperationDefinition/Questionnaire-next-question"


SEARCH_BY_CANONICAL = [
    {"name": "url", "type": "uri", "documentation": "the canonical url; url|version accepted"},
    {"name": "version", "type": "token"},
]


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
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                        }
                    ],
                    "description": (
                        "SMART Backend Services (client_credentials, private_key_jwt with RS384"
                        " or ES384; see /.well-known/smart-configuration) for systems, a"
                        " signed-in session for the portal. Every resource and operation but"
                        " this CapabilityStatement needs one; a caller reads only the"
                        " requests it (or its organization) submitted. The review, the PA"
                        " metrics and the error reports are for the payer's pharmacists,"
                        " signed in: no system's token opens them, whatever its scopes."
                    ),
                },
                "resource": [
                    {
                        "type": "Questionnaire",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": SEARCH_BY_CANONICAL,
                        "operation": [
                            {"name": "questionnaire-package", "definition": DTR_QPACKAGE},
                            {"name": "next-question", "definition": SDC_NEXT_QUESTION},
                            {"name": "log-questionnaire-errors", "definition": DTR_LOG_ERRORS},
                        ],
                    },
                    {
                        "type": "ValueSet",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": SEARCH_BY_CANONICAL,
                        "operation": [{"name": "expand", "definition": VALUESET_EXPAND}],
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
