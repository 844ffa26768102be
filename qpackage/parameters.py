"""The input Parameters of the DTR operations, checked before anything is done.

A body that is not the Parameters an operation defines is a 400
OperationOutcome naming the parameter and what is wrong with it — never a
silent empty answer: ``{"resourceType": "Parameters"}`` alone, a Bundle, a
Coverage that is not a Coverage, two coverages, a ``questionnaire`` that is
not a canonical string, a ``changedsince`` that is not an instant with a time
zone. The resources a client sends (Coverage, orders) are checked for FHIR
structure with ``fhir.resources``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from scoring.outcome import InvalidInput, Issue

# DTR dtr-qpackage-input-parameters: the request resources an order may be
ORDER_TYPES = frozenset(
    {
        "Appointment", "Encounter", "CommunicationRequest", "DeviceRequest", "MedicationRequest",
        "NutritionOrder", "ServiceRequest", "SupplyRequest", "VisionPrescription",
    }
)  # fmt: skip
PACKAGE_PARAMETERS = frozenset({"coverage", "order", "questionnaire", "context", "changedsince"})


@dataclass(frozen=True)
class PackageRequest:
    """What a ``$questionnaire-package`` call asks for."""

    coverage: dict[str, Any]
    orders: list[dict[str, Any]] = field(default_factory=list)
    questionnaires: list[str] = field(default_factory=list)
    context: str | None = None
    changed_since: datetime | None = None
    ignored: list[str] = field(default_factory=list)  # parameter names not defined

    @property
    def member(self) -> dict[str, Any] | None:
        """The member the package is for: the Coverage's beneficiary."""
        beneficiary = self.coverage.get("beneficiary")
        return beneficiary if isinstance(beneficiary, dict) else None


def _bad(message: str, where: str = "Parameters") -> InvalidInput:
    return InvalidInput([Issue("invalid", message, where)], 400)


def parameter_list(body: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    """The ``parameter`` entries of a Parameters body: a non-empty list of
    objects, each with a name."""
    if body.get("resourceType") != "Parameters":
        kind = body.get("resourceType")
        raise _bad(
            f"{operation} takes a Parameters resource, not {kind!r}"
            if isinstance(kind, str)
            else f"{operation} takes a Parameters resource (resourceType missing)",
            "resourceType",
        )
    entries = body.get("parameter")
    if not isinstance(entries, list) or not entries:
        raise _bad(
            f"{operation}: Parameters.parameter must list the inputs", "Parameters.parameter"
        )
    for position, entry in enumerate(entries):
        where = f"Parameters.parameter[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _bad(f"{operation}: every parameter is an object with a name", where)
        if "resource" in entry and not isinstance(entry["resource"], dict):
            raise _bad(f"parameter {entry['name']!r}: resource must be a JSON object", where)
    return entries


def _resource(entry: dict[str, Any], position: int, types: frozenset[str]) -> dict[str, Any]:
    where = f"Parameters.parameter[{position}].resource"
    name = entry["name"]
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        raise _bad(f"parameter {name!r} carries a resource", where)
    kind = resource.get("resourceType")
    if kind not in types:
        allowed = " or ".join(sorted(types))
        raise _bad(f"parameter {name!r} must be a {allowed}, not {kind!r}", where)
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise _bad(
            f"parameter {name!r}: the {kind} is not valid FHIR ({problems})", where
        ) from None
    return resource


def _value(entry: dict[str, Any], position: int, key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        where = f"Parameters.parameter[{position}]"
        raise _bad(f"parameter {entry['name']!r} takes a non-empty {key}", where)
    return value.strip()


def _instant(text: str, position: int) -> datetime:
    where = f"Parameters.parameter[{position}].valueInstant"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"changedsince {text!r} is not an instant", where) from None
    if moment.tzinfo is None or len(text) < 20:
        raise _bad(f"changedsince {text!r} needs a time of day and a time zone", where)
    return moment


def package_request(body: dict[str, Any]) -> PackageRequest:
    """A ``$questionnaire-package`` body (DTR qpackage-input-parameters)."""
    entries = parameter_list(body, "$questionnaire-package")
    coverages: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    canonicals: list[str] = []
    contexts: list[str] = []
    since: list[datetime] = []
    ignored: list[str] = []
    for position, entry in enumerate(entries):
        name = entry["name"]
        if name == "coverage":
            coverages.append(_resource(entry, position, frozenset({"Coverage"})))
        elif name == "order":
            orders.append(_resource(entry, position, ORDER_TYPES))
        elif name == "questionnaire":
            canonicals.append(_value(entry, position, "valueCanonical"))
        elif name == "context":
            contexts.append(_value(entry, position, "valueString"))
        elif name == "changedsince":
            since.append(_instant(_value(entry, position, "valueInstant"), position))
        else:
            ignored.append(name)
    if len(coverages) != 1:
        raise InvalidInput(
            [
                Issue(
                    "required",
                    "$questionnaire-package takes exactly one 'coverage' (the member's Coverage),"
                    f" not {len(coverages)}",
                    "Parameters.parameter",
                )
            ],
            400,
        )
    if not orders and not canonicals and not contexts:
        raise InvalidInput(
            [
                Issue(
                    "required",
                    "give at least one of 'order', 'questionnaire' and 'context' (dtr-1)",
                    "Parameters.parameter",
                )
            ],
            400,
        )
    for name, found in (("context", contexts), ("changedsince", since)):
        if len(found) > 1:
            raise _bad(f"$questionnaire-package takes at most one {name!r}")
    return PackageRequest(
        coverage=coverages[0],
        orders=orders,
        questionnaires=canonicals,
        context=contexts[0] if contexts else None,
        changed_since=since[0] if since else None,
        ignored=ignored,
    )


@dataclass(frozen=True)
class ErrorLog:
    """A ``$log-questionnaire-errors`` report: the Questionnaires it is about
    and one OperationOutcome holding the issues of every outcome sent."""

    questionnaires: list[str]
    outcome: dict[str, Any]


def error_log(body: dict[str, Any]) -> ErrorLog:
    """A ``$log-questionnaire-errors`` body: the Questionnaire canonical and the
    OperationOutcome. The parameter names are accepted as the profile spells
    them (``questionnaire``, ``operationOutcome``) and as the
    OperationDefinition does (``Questionnaire``, ``OperationOutcome``)."""
    entries = parameter_list(body, "$log-questionnaire-errors")
    canonicals: list[str] = []
    outcomes: list[dict[str, Any]] = []
    for position, entry in enumerate(entries):
        name = entry["name"].lower()
        if name == "questionnaire":
            canonicals.append(_value(entry, position, "valueCanonical"))
        elif name in ("operationoutcome", "outcome"):
            outcomes.append(_resource(entry, position, frozenset({"OperationOutcome"})))
    if not canonicals or not outcomes:
        raise InvalidInput(
            [
                Issue(
                    "required",
                    "$log-questionnaire-errors takes a 'questionnaire' canonical and an"
                    " 'operationOutcome' resource",
                    "Parameters.parameter",
                )
            ],
            400,
        )
    merged = (
        outcomes[0]
        if len(outcomes) == 1
        else {
            "resourceType": "OperationOutcome",
            "issue": [issue for outcome in outcomes for issue in outcome.get("issue", [])],
        }
    )
    return ErrorLog(questionnaires=list(dict.fromkeys(canonicals)), outcome=merged)


def expand_request(body: dict[str, Any]) -> tuple[str, str | None]:
    """A ``ValueSet/$expand`` POST body: its ``url`` (``url|version`` accepted)
    and ``valueSetVersion``."""
    entries = parameter_list(body, "ValueSet/$expand")
    url = version = None
    for position, entry in enumerate(entries):
        if entry["name"] == "url":
            url = _value(entry, position, "valueUri")
        elif entry["name"] == "valueSetVersion":
            version = _value(entry, position, "valueString")
        elif entry["name"] == "valueSet":
            raise InvalidInput(
                [
                    Issue(
                        "not-supported",
                        "this server expands only the ValueSets it publishes: give their 'url'",
                    )
                ],
                400,
            )
    if url is None:
        raise InvalidInput([Issue("required", "ValueSet/$expand needs a 'url'")], 400)
    return url, version
