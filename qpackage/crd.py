"""Coverage Requirements Discovery (Da Vinci CRD 2.x over CDS Hooks 2.0), pure:
the services this payer offers, what it asserts about an order, and the card.

- ``services(catalog)``: the ``order-select`` and ``order-sign`` services for
  MedicationRequest, with prefetch templates whose codes are those the
  policies' ``ehr:`` sources name (the same sources the prepopulation CQL is
  generated from), never typed by hand.
- ``configuration``: the CRD configuration options a hook request sets
  (``davinci-crd.configuration``) that the services honour and declare in
  discovery (``davinci-crd.configuration-options``): ``coverage-info`` and
  ``max-cards``; any other option is ignored, as CRD says.
- ``assess``: for a draft order of a drug one of the member's payer's policies
  covers (matched as ``$questionnaire-package`` matches an order, the payer as
  it matches the Coverage's ``payor``), one :class:`Assertion` per policy:
  covered, prior authorization needed and the documentation DTR asks — or,
  when the member holds an approval of that policy running today, prior
  authorization ``satisfied`` and nothing to document.
- ``coverage_information``: the assertion as the CRD ``coverage-information``
  extension the system action adds to the order.
- ``already_said``: the assertions an order already carries when what the
  payer would say now is what it said (CRD ``resp-35``: no system action
  unless something is new or changed).
- ``card``: what the prescriber reads, with the DTR launch link. CRD never
  approves: the card says what DTR will ask.

Which form: the initial request's, or the renewal's when the member holds an
approval of the policy on record (it has run out, or it would be satisfied).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from builder.prepopulation import sources
from cql_like.engine import CompiledRequest
from policies.model import AnyOf, Coding, Policy
from qpackage.catalog import Catalog
from qpackage.package import member_payers, policies_for_order
from qpackage.record import Record, RecordError, evaluate_record
from review.config import PayerConfig
from review.member import member_key

CRD = "http://hl7.org/fhir/us/davinci-crd"
COVERAGE_INFORMATION = f"{CRD}/StructureDefinition/ext-coverage-information"
HOOKS = ("order-select", "order-sign")
SERVICE_IDS = {f"dtr-pa-{hook}": hook for hook in HOOKS}
PATIENT = "{{context.patientId}}"
PRESCRIBER = (
    "{{context.draftOrders.entry.resource.ofType(MedicationRequest)"
    ".requester.resolve().ofType(PractitionerRole).id}}"
)
# the prefetch keys, as this service names them (a record evaluator reads them)
PREFETCH_KEYS = (
    "patient", "coverage", "practitionerRole", "conditions", "observations",
    "medicationRequests", "medicationStatements",
)  # fmt: skip
# what the answer cannot do without: the member and the Coverage naming the payer
REQUIRED_PREFETCH = ("patient", "coverage")


def _codes(catalog: Catalog, kind: str) -> list[Coding]:
    """Every code an ``ehr:`` source of this kind names, in any current
    policy, once, in file order."""
    seen: dict[tuple[str, str], Coding] = {}
    for policy in _current_policies(catalog):
        for question in sources(policy).values():
            for source in question.ehr:
                if source.kind == kind:
                    for coding in source.codes:
                        seen.setdefault((coding.system, coding.code), coding)
    return list(seen.values())


def _current_policies(catalog: Catalog) -> list[Policy]:
    found: dict[str, Policy] = {}
    for package in catalog.current.values():
        found.setdefault(package.policy.id, package.policy)
    return list(found.values())


def _search(resource: str, codes: Sequence[Coding]) -> str:
    listed = ",".join(f"{c.system}|{c.code}" for c in codes)
    return f"{resource}?patient={PATIENT}&code={listed}"


def prefetch_templates(catalog: Catalog) -> dict[str, str]:
    """The prefetch templates: the Patient and the member's active Coverage
    always; the prescriber's PractitionerRole when a policy reads a
    specialty; Conditions, Observations and medications with the codes the
    policies' ``ehr:`` sources name, when some do."""
    templates = {
        "patient": f"Patient/{PATIENT}",
        "coverage": f"Coverage?patient={PATIENT}&status=active",
    }
    if any(
        source.kind == "specialty"
        for policy in _current_policies(catalog)
        for question in sources(policy).values()
        for source in question.ehr
    ):
        templates["practitionerRole"] = f"PractitionerRole?_id={PRESCRIBER}"
    for key, kind, resource in (
        ("conditions", "condition", "Condition"),
        ("observations", "observation", "Observation"),
        ("medicationRequests", "medication", "MedicationRequest"),
        ("medicationStatements", "medication", "MedicationStatement"),
    ):
        codes = _codes(catalog, kind)
        if codes:
            templates[key] = _search(resource, codes)
    return templates


# the CDS Hooks card types (CRD Response Types); every card here is about
# coverage and the documentation DTR collects
CARD_TYPES = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
COVERAGE_INFO_TOPIC = {
    "system": CARD_TYPES,
    "code": "coverage-info",
    "display": "Coverage Information",
}
# the configuration options the services honour, as discovery declares them
# (CRD dev-4: code, type, name, description, default; dev-5: one boolean per
# card type returned, code from the CRD Response Types)
CONFIGURATION_OPTIONS: tuple[dict[str, Any], ...] = (
    {
        "code": "coverage-info",
        "type": "boolean",
        "name": "Coverage Information",
        "description": "Whether the order is covered, needs prior authorization and which DTR"
        " form documents it: the coverage-information update and the card launching DTR."
        " False: neither.",
        "default": True,
    },
    {
        "code": "max-cards",
        "type": "integer",
        "name": "Maximum cards",
        "description": "The most cards returned, those of the first orders first; the"
        " coverage-information updates are never cut.",
        "default": 10,
    },
)


class ConfigurationError(ValueError):
    """A configuration option this service honours, set to a value it cannot take."""


@dataclass(frozen=True)
class Configuration:
    """What a hook request asks of the answer (CRD ``davinci-crd.configuration``)."""

    coverage_info: bool = True
    max_cards: int = 10


def configuration(extension: Any) -> Configuration:
    """The options of a hook request's ``extension`` that this service
    honours; those it does not know are ignored (CRD dev-17), and none set
    is the defaults (dev-15). A known option of the wrong type, or a
    negative ``max-cards``, is a ConfigurationError naming it."""
    if extension is None:
        return Configuration()
    if not isinstance(extension, dict):
        raise ConfigurationError("extension must be a JSON object")
    asked = extension.get("davinci-crd.configuration")
    if asked is None:
        return Configuration()
    if not isinstance(asked, dict):
        raise ConfigurationError("extension.davinci-crd.configuration must be a JSON object")
    found = Configuration()
    if "coverage-info" in asked:
        value = asked["coverage-info"]
        if not isinstance(value, bool):
            raise ConfigurationError(
                f"configuration coverage-info must be true or false, not {value!r}"
            )
        found = replace(found, coverage_info=value)
    if "max-cards" in asked:
        value = asked["max-cards"]
        # JSON true is no count (Python's bool is an int)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(
                f"configuration max-cards must be a whole number, 0 or more, not {value!r}"
            )
        found = replace(found, max_cards=value)
    return found


def services(catalog: Catalog) -> dict[str, Any]:
    """The discovery document (``GET /cds-services``), each service with the
    configuration options it honours."""
    prefetch = prefetch_templates(catalog)
    return {
        "services": [
            {
                "hook": hook,
                "id": service_id,
                "title": f"Prior authorization of a drug ({hook})",
                "description": "Says whether a drug ordered needs the payer's prior"
                " authorization, and which DTR form documents it; updates the order with"
                " the CRD coverage-information extension.",
                "prefetch": prefetch,
                "usageRequirements": "A JWT signed by a registered CDS client key on every"
                " call; the Patient and the member's Coverage prefetched or fetchable.",
                "extension": {
                    "davinci-crd.configuration-options": [dict(o) for o in CONFIGURATION_OPTIONS]
                },
            }
            for service_id, hook in SERVICE_IDS.items()
        ]
    }


@dataclass(frozen=True)
class Assertion:
    """What the payer asserts about one order under one policy (CRD
    coverage-information), and what it needs to remember of it."""

    id: str
    coverage: str  # the Coverage, as the CRD client's reference names it
    order: str  # ResourceType/id of the order
    member: str | None  # the member key (review.member)
    policy: str
    covered: str
    date: date
    pa_needed: str | None = None
    doc_needed: str | None = None
    doc_purpose: tuple[str, ...] = ()
    info_needed: tuple[str, ...] = ()
    questionnaires: tuple[str, ...] = ()  # url|version
    reason: str | None = None
    satisfied_pa_id: str | None = None
    drug: str = field(default="", compare=False)  # the drug's name, for the card
    # the forms asserted, compiled: what DTR will ask, for the card
    forms: tuple[CompiledRequest, ...] = field(default=(), compare=False, repr=False)


def _extension(url: str, key: str, value: Any) -> dict[str, Any]:
    return {"url": url, key: value}


def coverage_information(assertion: Assertion) -> dict[str, Any]:
    """The CRD ``coverage-information`` extension of an assertion."""
    parts: list[dict[str, Any]] = [
        _extension("coverage", "valueReference", {"reference": assertion.coverage}),
        _extension("covered", "valueCode", assertion.covered),
    ]
    if assertion.pa_needed is not None:
        parts.append(_extension("pa-needed", "valueCode", assertion.pa_needed))
    if assertion.doc_needed is not None:
        parts.append(_extension("doc-needed", "valueCode", assertion.doc_needed))
    parts += [_extension("doc-purpose", "valueCode", p) for p in assertion.doc_purpose]
    parts += [_extension("info-needed", "valueCode", i) for i in assertion.info_needed]
    if assertion.reason is not None:
        parts.append(_extension("reason", "valueCodeableConcept", {"text": assertion.reason}))
    parts += [_extension("questionnaire", "valueCanonical", q) for q in assertion.questionnaires]
    parts.append(_extension("date", "valueDate", assertion.date.isoformat()))
    parts.append(_extension("coverage-assertion-id", "valueString", assertion.id))
    if assertion.satisfied_pa_id is not None:
        parts.append(_extension("satisfied-pa-id", "valueString", assertion.satisfied_pa_id))
    return {"url": COVERAGE_INFORMATION, "extension": parts}


def covers(extension: Mapping[str, Any]) -> str | None:
    """The Coverage a ``coverage-information`` extension speaks of."""
    for part in extension.get("extension") or []:
        if isinstance(part, dict) and part.get("url") == "coverage":
            reference = part.get("valueReference") or {}
            return str(reference.get("reference"))
    return None


def _assertion_id(extension: Mapping[str, Any]) -> str | None:
    for part in extension.get("extension") or []:
        if isinstance(part, dict) and part.get("url") == "coverage-assertion-id":
            value = part.get("valueString")
            return value if isinstance(value, str) else None
    return None


# what an assertion says, as against when it was said and its id: a
# re-sent order's extension differs in these alone when nothing is new
_CIRCUMSTANTIAL = ("date", "coverage-assertion-id")


def _said(extension: Mapping[str, Any]) -> list[str]:
    """The extension's parts but its date and id, in a canonical order (an
    EHR may keep the sub-extensions in another)."""
    return sorted(
        json.dumps(part, sort_keys=True)
        for part in extension.get("extension") or []
        if not (isinstance(part, dict) and part.get("url") in _CIRCUMSTANTIAL)
    )


def already_said(
    made: Sequence[Assertion], order: Mapping[str, Any], known: Callable[[str], bool]
) -> list[Assertion] | None:
    """The assertions ``made`` now, each under the id of the one the order
    already carries, when the order's ``coverage-information`` extensions
    for those coverages are all the payer's own (``known``: an assertion id
    this service made, for this client and order) and say exactly what the
    payer would say now, date and id aside; None when anything is new or
    changed (another coverage, coverage or prior authorization changed,
    other documentation or forms), or an extension is one the payer never
    made: then the order is updated."""
    ours = {assertion.coverage for assertion in made}
    carried = [
        e
        for e in order.get("extension") or []
        if isinstance(e, dict) and e.get("url") == COVERAGE_INFORMATION and covers(e) in ours
    ]
    if len(carried) != len(made):
        return None
    remaining = [(_assertion_id(e), _said(e)) for e in carried]
    if any(rid is None or not known(rid) for rid, _ in remaining):
        return None
    found = []
    for assertion in made:
        now = _said(coverage_information(assertion))
        same = next((i for i, (_, said) in enumerate(remaining) if said == now), None)
        if same is None:
            return None
        rid, _ = remaining.pop(same)
        assert rid is not None
        found.append(replace(assertion, id=rid))
    return found


# (record id, questionnaire url|version, determination JSON) of each approval
Approvals = Callable[[str, str], Sequence[tuple[str, str, dict[str, Any]]]]


def _running(approvals: Iterable[tuple[str, str, dict[str, Any]]], today: date) -> str | None:
    """The record id of an approval whose authorization runs today."""
    for record, _questionnaire, determination in approvals:
        term = determination.get("authorization") or {}
        start, end = term.get("start"), term.get("end")
        if isinstance(start, str) and isinstance(end, str) and start <= today.isoformat() <= end:
            return record
    return None


def _forms(catalog: Catalog, policy: Policy, drug: str | None) -> dict[str, CompiledRequest]:
    return {
        package.kind: package
        for package in catalog.current.values()
        if package.policy is policy and package.drug == drug
    }


def _sections(package: CompiledRequest) -> tuple[str, ...]:
    """The policy sections a form asks, as the card names them."""
    found = []
    for node in package.tree:
        if isinstance(node, AnyOf):
            found.append(" or ".join(f"{c.id} ({_short(c.text)})" for c in node.any_of))
        else:
            found.append(f"{node.id} ({_short(node.text)})")
    return tuple(found)


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _reference(resource: Mapping[str, Any]) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def assess(
    catalog: Catalog,
    order: Mapping[str, Any],
    coverage: Mapping[str, Any],
    *,
    payers: Mapping[str, PayerConfig],
    today: date,
    approvals: Approvals,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> list[Assertion]:
    """What the payer asserts about one draft order for the member the
    Coverage names: one assertion per policy of that payer covering the drug;
    none for a drug no policy covers, or a Coverage naming no payer here."""
    payer_ids, unknown = member_payers(dict(coverage), payers)
    if unknown is not None:
        return []
    member = member_key(coverage.get("beneficiary"))
    found: dict[str, list[tuple[Policy, str | None]]] = {}
    for policy, drug in policies_for_order(catalog, dict(order)):
        if policy.policy.payer.identifier in payer_ids:
            found.setdefault(policy.id, []).append((policy, drug))
    assertions = []
    for matched in found.values():
        policy = matched[0][0]
        held = list(approvals(member, policy.id)) if member is not None else []
        running = _running(held, today)
        kind = "renewal" if held else "initial"
        forms = [_forms(catalog, p, drug).get(kind) for p, drug in matched]
        packages = [f for f in forms if f is not None]
        several = len(packages) > 1
        base = Assertion(
            id=new_id(),
            coverage=_reference(coverage),
            order=_reference(order),
            member=member,
            policy=policy.id,
            covered="covered",
            date=today,
            drug=policy.drug(matched[0][1]).name if not several else policy.policy.title,
        )
        name = f"{policy.policy.number or policy.id} ({policy.policy.title})"
        if running is not None:
            assertions.append(
                replace(
                    base,
                    pa_needed="satisfied",
                    satisfied_pa_id=running,
                    reason=f"An approval under {name} runs today.",
                )
            )
            continue
        # a drug of several forms the order does not tell apart (the drug of a
        # policy of several, named too broadly): which form is conditional
        assertions.append(
            replace(
                base,
                pa_needed="auth-needed",
                doc_needed="conditional" if several else "clinical",
                doc_purpose=("withpa",),
                info_needed=("detail-code",) if several else (),
                questionnaires=tuple(
                    f"{p.questionnaire['url']}|{p.questionnaire['version']}" for p in packages
                ),
                reason=f"{name} requires prior authorization: the prescriber documents its"
                f" {kind} criteria in DTR.",
                forms=tuple(packages),
            )
        )
    return assertions


_SAID = {
    "met": "already looks met from the record",
    "not-met": "looks not met from the record",
}


def what_the_record_shows(
    forms: Sequence[CompiledRequest], prefetch: Mapping[str, Any], as_of: date
) -> str:
    """The card's paragraph on what the record already shows, for the forms
    asserted and the call's prefetch (by the keys of ``PREFETCH_KEYS``): each
    section of the policy the record alone decides (``qpackage.record``: the
    policy's criteria evaluated three-valued on what the prefetch prefills,
    from the same ``ehr:`` sources as the prepopulation CQL), and each
    section left for the prescriber or a document. It never says a request
    will be approved or denied: DTR asks, the payer decides."""
    try:
        record = Record.from_prefetch(prefetch)
    except RecordError as exc:
        record, unread = Record(), str(exc)
    else:
        unread = ""
    lines = []
    for form in forms:
        found = evaluate_record(form, record, as_of)
        for finding in found.findings:
            if finding.status in _SAID:
                shown = f" ({'; '.join(finding.read)})" if finding.read else ""
                lines.append(f"- {finding.section}: {_SAID[finding.status]}{shown}")
            else:
                needs = "; ".join(need.text for need in finding.needs)
                lines.append(
                    f"- {finding.section}: needs the prescriber or a document"
                    + (f" ({needs})" if needs else "")
                )
    if not lines:
        return ""
    said = "What the record sent with the order already shows, section by section:\n\n"
    said += "\n".join(lines)
    if unread:
        said += f"\n\nPart of the record could not be read ({unread}): DTR will ask instead."
    return said


def launch_context(assertion: Assertion) -> dict[str, Any]:
    """The DTR launch's ``appContext`` (DTR: the order, the coverage and the
    questionnaires), with the assertion id ``$questionnaire-package`` takes
    as ``context``."""
    return {
        "order": [assertion.order],
        "coverage": [assertion.coverage],
        "questionnaire": list(assertion.questionnaires),
        "coverageAssertionId": assertion.id,
    }


def card(
    assertion: Assertion,
    prefetch: Mapping[str, Any],
    *,
    payer: str,
    launch_url: str,
    as_of: date,
) -> dict[str, Any]:
    """The CDS Hooks card for an assertion needing documentation, with the
    SMART link that launches DTR on the order."""
    detail = [
        "This is not a decision: the payer decides once DTR sends the completed form.",
        what_the_record_shows(assertion.forms, prefetch, as_of),
    ]
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"crd:{assertion.id}")),
        "summary": _short(f"Prior authorization needed: {assertion.drug or assertion.policy}", 140),
        "detail": "\n\n".join(part for part in [assertion.reason or "", *detail] if part),
        "indicator": "info",
        "source": {"label": payer, "topic": dict(COVERAGE_INFO_TOPIC)},
        "links": [
            {
                "label": "Document the prior authorization (DTR)",
                "url": launch_url,
                "type": "smart",
                "appContext": json.dumps(launch_context(assertion), separators=(",", ":")),
            }
        ],
    }
