"""The draft QuestionnaireResponse of a package Bundle (DTR oper-18, oper-19).

One draft per Questionnaire, conforming to the DTR QuestionnaireResponse
profile: ``status`` in-progress, ``questionnaire`` the Bundle's
``url|version``, the member as ``subject``, the Coverage in ``qr-coverage``,
each order in ``qr-context``, and ``intendedUse`` "withpa" (the answers go
with a prior-authorization request).

The payer answers what it knows itself, each answer marked with
``information-origin`` ``auto-server``:

- a question the policy marks ``prefill: plan_approval`` ("approved before by
  this plan") is answered *true* when the service holds an approval of this
  policy for the member — never *false*, since an approval given before this
  service kept records is as good;
- the generated ``prior_renewals`` question (a policy capping renewals) is
  answered with the number of renewals this service approved, when it holds
  any — a floor the prescriber can raise;
- a ``context`` (a pended request's id) brings back every answer given then.

References point at the client's FHIR server (relative ``Coverage/{id}``),
never at the payer (DTR spec-139).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cql_like.engine import CompiledRequest
from policies.generated import PRIOR_RENEWALS
from scoring.fill import nest

DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
DTR_QR = f"{DTR}/dtr-questionnaireresponse"
QR_COVERAGE = f"{DTR}/qr-coverage"
QR_CONTEXT = f"{DTR}/qr-context"
INTENDED_USE = f"{DTR}/intendedUse"
INFORMATION_ORIGIN = f"{DTR}/information-origin"
CRD_CODES = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/coverage-information-codes"


@dataclass(frozen=True)
class History:
    """What the payer holds for the member under the package's policy."""

    approvals: int = 0  # approved requests of any kind
    renewals: int = 0  # approved renewal requests


def reference_to(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A reference to a resource the client sent, on the client's server."""
    kind = resource.get("resourceType")
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        return {"reference": f"{kind}/{rid}"}
    identifiers = resource.get("identifier")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], dict):
        return {"type": kind, "identifier": identifiers[0]}
    return {"type": kind, "display": f"the {kind} sent with the request"}


def origin_auto_server() -> dict[str, Any]:
    return {"url": INFORMATION_ORIGIN, "extension": [{"url": "source", "valueCode": "auto-server"}]}


def draft_response(
    package: CompiledRequest,
    *,
    coverage: Mapping[str, Any],
    orders: Sequence[Mapping[str, Any]],
    subject: Mapping[str, Any] | None,
    history: History,
    earlier: Mapping[str, list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The draft for ``package``'s Questionnaire. ``earlier`` holds the answers
    of a pended request by linkId (answer dicts as submitted)."""
    questionnaire = package.questionnaire
    extensions: list[dict[str, Any]] = [
        {"url": QR_COVERAGE, "valueReference": reference_to(coverage)},
        *({"url": QR_CONTEXT, "valueReference": reference_to(order)} for order in orders),
        {
            "url": INTENDED_USE,
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": CRD_CODES,
                        "code": "withpa",
                        "display": "Include in prior authorization",
                    }
                ]
            },
        },
    ]
    answers: dict[str, list[dict[str, Any]]] = {
        link: [dict(a) for a in given] for link, given in (earlier or {}).items()
    }
    for link_id, answer in _known(package, history).items():
        answers.setdefault(link_id, [answer])
    for given in answers.values():
        for answer in given:
            others = [e for e in answer.get("extension", []) if e.get("url") != INFORMATION_ORIGIN]
            answer["extension"] = [*others, origin_auto_server()]
    draft: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": f"draft-{uuid.uuid4().hex[:16]}",
        "meta": {"profile": [DTR_QR]},
        "extension": extensions,
        "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}",
        "status": "in-progress",
    }
    if subject is not None:
        draft["subject"] = dict(subject)
    items = nest(questionnaire["item"], answers)
    if items:
        draft["item"] = items
    return draft


def _known(package: CompiledRequest, history: History) -> dict[str, dict[str, Any]]:
    """The answers the payer's own records give, by linkId."""
    known: dict[str, dict[str, Any]] = {}
    for name, info in package.index.questions.items():
        if info.question.prefill == "plan_approval" and history.approvals:
            known[info.link_id] = {"valueBoolean": True}
        elif name == PRIOR_RENEWALS and history.renewals:
            known[info.link_id] = {"valueInteger": history.renewals}
    return known
