"""``$questionnaire-package`` (DTR 2.2.0): which Questionnaires a request
names, and the output Parameters.

The Questionnaires returned are the union of those named by each input
(DTR "the union ... each Questionnaire version only once"):

- ``questionnaire`` canonicals: the version given, or the current one for a
  bare url;
- ``order``s: the current Questionnaires of every policy of the member's payer
  whose drug the order's medication is (RxNorm or NDC code; the product name
  where the data has no code), for the drug ordered in a policy of several
  drugs. The payer is the one whose payer file lists an identifier
  (system|value) the Coverage's ``payor`` carries — the reference's own
  ``identifier``, or the identifiers of the Organization it points to inside
  the Coverage (``contained``); a display name never decides. A Coverage
  naming no payer of this service selects nothing, with a warning naming
  what it sent;
- ``context``: the Questionnaire a stored (pended) request answered, with its
  answers brought back in the draft — only for the same member; when a later
  version of that form is in effect, that version, with the answers that
  carry over to it (``scoring.carry``), since it is the one that decides the
  completed request. Or a CRD coverage assertion's id (``qpackage.crd``):
  the forms the assertion named, in the version in effect — again only for
  the member it was made for.

Each comes in a ``collection`` Bundle (DTR-QPackageBundle): the Questionnaire
first, then its one draft QuestionnaireResponse, then each ValueSet it
references, version-specific and expanded as of now when it has fewer than
40 codes. No Library: the FHIRPath definitions are the payer's scorer, not a
client's prepopulation logic. Anything that matched nothing is a warning in
``outcome``; the status is 200 all the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from builder.questionnaire import TERMINOLOGY_SERVERS
from builder.valuesets import EXPAND_BELOW, codings, expanded
from cql_like.engine import CompiledRequest
from policies.model import NDC, RXNORM, Policy
from qpackage.adaptive import adaptive_questionnaire, start, static_url
from qpackage.catalog import Catalog
from qpackage.draft import History, draft_response
from qpackage.parameters import PackageRequest
from questionnaires.checks import iter_items
from review.config import PayerConfig
from review.member import member_key
from scoring.carry import carry_over
from scoring.fill import earlier_answers
from scoring.outcome import Issue, operation_outcome

DTR_QPACKAGE_BUNDLE = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/DTR-QPackageBundle"
DTR_QPACKAGE_OUTPUT = (
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-qpackage-output-parameters"
)


@dataclass(frozen=True)
class StoredRequest:
    """What a ``context`` id names: a request this service decided."""

    id: str
    questionnaire: str  # url|version
    member: str | None
    outcome: str
    response: dict[str, Any]


@dataclass(frozen=True)
class CoverageAssertion:
    """What a ``context`` id names when CRD made it: a coverage assertion."""

    id: str
    member: str | None
    questionnaires: tuple[str, ...]  # url|version


@dataclass
class _Selected:
    package: CompiledRequest
    earlier: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    adaptive: bool = False  # the adaptive form of the package's Questionnaire


def _canonical(resource: dict[str, Any]) -> str:
    return f"{resource['url']}|{resource['version']}"


def _codings(order: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """The ordered medication's codings and text (MedicationRequest, or the
    ``code`` of another request resource)."""
    concept = order.get("medicationCodeableConcept") or order.get("code") or {}
    if not isinstance(concept, dict):
        return [], None
    coded = [c for c in concept.get("coding", []) if isinstance(c, dict)]
    return coded, concept.get("text")


def _ndc_product(code: str) -> str:
    """An NDC package code (labeler-product-package) reduced to labeler-product."""
    parts = code.split("-")
    return "-".join(parts[:2]) if len(parts) == 3 else code


def policies_for_order(catalog: Catalog, order: dict[str, Any]) -> list[tuple[Policy, str | None]]:
    """(policy, drug id) for each policy drug the order's medication matches:
    RxNorm or NDC code first; the product name (text or display) where the
    data has no code. The drug id is None for a policy of one drug (its
    Questionnaires are not per drug)."""
    coded, text = _codings(order)
    names = [str(text or "")] + [str(c.get("display") or "") for c in coded]
    found = []
    for policy in catalog.policies.values():
        for drug in policy.drugs:
            by_code = any(
                (c.get("system") == RXNORM and c.get("code") in drug.rxnorm)
                or (c.get("system") == NDC and _ndc_product(str(c.get("code", ""))) in drug.ndc)
                for c in coded
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


def payor_identifiers(coverage: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The payer identifiers (``system|value``) a Coverage's ``payor`` carries:
    each reference's own ``identifier``, or the identifiers of the Organization
    it references inside the Coverage (``#id`` in ``contained``). Also, for the
    warning when none is known, each payor that carries none, as sent."""
    contained = {
        f"#{r.get('id')}": r
        for r in coverage.get("contained") or []
        if isinstance(r, dict) and r.get("resourceType") == "Organization" and r.get("id")
    }
    found: list[str] = []
    bare: list[str] = []
    for payor in coverage.get("payor") or []:
        if not isinstance(payor, dict):
            continue
        identifiers = [payor.get("identifier")]
        target = contained.get(str(payor.get("reference") or ""))
        if target is not None:
            identifiers += target.get("identifier") or []
        keys = [
            f"{i['system']}|{i['value']}"
            for i in identifiers
            if isinstance(i, dict) and isinstance(i.get("system"), str) and i.get("value")
        ]
        found += keys
        if not keys:
            named = payor.get("display") or payor.get("reference")
            bare.append(f"{named!r}" if named else "a payor with nothing in it")
    return found, bare


def member_payers(
    coverage: dict[str, Any], payers: Mapping[str, PayerConfig]
) -> tuple[set[str], Issue | None]:
    """The payers (payer file identifiers) the Coverage names by identifier,
    and, when it names none of them, the warning saying what it sent."""
    found, bare = payor_identifiers(coverage)
    matched = {
        payer.identifier
        for payer in payers.values()
        if any(identifier.key() in found for identifier in payer.identifiers)
    }
    if matched:
        return matched, None
    if found:
        why = (
            f"payor identifier {', '.join(found)} is not that of a payer of this service"
            if len(found) == 1
            else f"payor identifiers {', '.join(found)} are not those of a payer of this service"
        )
    else:
        why = (
            f"payor {', '.join(bare) or '(none)'} carries no identifier, and a name does not"
            " identify a payer"
        )
    return matched, Issue(
        "not-found",
        f"coverage: {why}: no Questionnaires are selected for the orders",
        "Coverage.payor",
        severity="warning",
    )


def value_set_canonicals(questionnaire: dict[str, Any]) -> list[str]:
    """Every ValueSet a Questionnaire references, once, in document order."""
    seen: dict[str, None] = {}
    for item, _ in iter_items(questionnaire["item"]):
        if "answerValueSet" in item:
            seen.setdefault(item["answerValueSet"], None)
    return list(seen)


def history_of(catalog: Catalog, approved: Iterable[str]) -> History:
    """The member's approvals under a policy, from the Questionnaire canonicals
    of the approved requests."""
    kinds = [catalog.packages[c].kind for c in approved if c in catalog.packages]
    return History(approvals=len(kinds), renewals=sum(1 for k in kinds if k == "renewal"))


def questionnaire_package(
    catalog: Catalog,
    request: PackageRequest,
    *,
    now: datetime,
    base: str,
    as_of: date | None = None,
    context: StoredRequest | CoverageAssertion | None = None,
    payers: Mapping[str, PayerConfig],
    approved: Callable[[str, str], Sequence[str]] = lambda _member, _policy: (),
    released_at: Callable[[str], datetime | None] = lambda _canonical: None,
) -> dict[str, Any]:
    """The output Parameters for a checked request.

    ``payers`` are the payer files by identifier: an order selects the forms
    of the payer the Coverage names by identifier.
    ``context`` is the stored request or the coverage assertion the
    ``context`` id names (None when the id is unknown); ``approved(member, policy)`` the Questionnaire canonicals
    of that member's approved requests under the policy; ``released_at`` when
    a canonical was first released (None when unknown: it counts as changed)."""
    issues: list[Issue] = []
    selected: dict[str, _Selected] = {}

    def add(package: CompiledRequest, adaptive: bool = False) -> _Selected:
        key = _canonical(package.questionnaire) + ("#adaptive" if adaptive else "")
        return selected.setdefault(key, _Selected(package, adaptive=adaptive))

    def chosen_urls() -> set[str]:
        return {c.package.questionnaire["url"] for c in selected.values()}

    for canonical in request.questionnaires:
        url, _, version = canonical.partition("|")
        # an adaptive form is asked for by its own url (the static url + "-adaptive")
        adaptive = static_url(url) is not None
        url = static_url(url) or url
        pool = catalog.packages if version else catalog.current
        matches = [
            p
            for key, p in pool.items()
            if key.split("|")[0] == url and (not version or key.split("|")[1] == version)
        ]
        if not matches:
            issues.append(
                Issue(
                    "not-found",
                    f"questionnaire {canonical}: no such Questionnaire is known to this payer",
                    severity="warning",
                )
            )
        for package in matches:
            add(package, adaptive)
    member = member_key(request.member)
    if request.context is not None:
        if context is None:
            issues.append(
                Issue(
                    "not-found",
                    f"context {request.context}: no request of this payer has that id",
                    severity="warning",
                )
            )
        elif member is None or context.member != member:
            issues.append(
                Issue(
                    "business-rule",
                    f"context {request.context}: that request is not the Coverage's"
                    " beneficiary's; its answers are not returned",
                    severity="warning",
                )
            )
        elif isinstance(context, CoverageAssertion):
            for canonical in context.questionnaires:
                asserted = catalog.packages.get(canonical)
                if asserted is None:
                    issues.append(
                        Issue(
                            "not-found",
                            f"context {request.context}: its Questionnaire {canonical}"
                            " is no longer known",
                            severity="warning",
                        )
                    )
                else:
                    add(catalog.in_effect(asserted))
        elif context.questionnaire not in catalog.packages:
            issues.append(
                Issue(
                    "not-found",
                    f"context {request.context}: its Questionnaire {context.questionnaire}"
                    " is no longer known",
                    severity="warning",
                )
            )
        else:
            stored = catalog.packages[context.questionnaire]
            response = context.response
            in_effect = catalog.in_effect(stored)
            if in_effect is not stored:
                # completed now, it is decided under the version in effect: the
                # form offered is that one, with the answers that carry over
                response = carry_over(stored, in_effect, response).response
            chosen = add(in_effect)
            chosen.earlier = earlier_answers(response)

    member_payer, unknown_payer = member_payers(request.coverage, payers)
    if unknown_payer is not None and request.orders:
        issues.append(unknown_payer)
    for position, order in enumerate(request.orders if unknown_payer is None else []):
        matched = [
            (policy, drug)
            for policy, drug in policies_for_order(catalog, order)
            if policy.policy.payer.identifier in member_payer
        ]
        if not matched:
            coded, text = _codings(order)
            what = text or ", ".join(f"{c.get('system')}|{c.get('code')}" for c in coded)
            issues.append(
                Issue(
                    "not-found",
                    f"order {position + 1} ({order.get('resourceType')}"
                    f" {order.get('id') or ''} {what or 'no code or text'}): no policy of this"
                    " payer covers what it orders, so no documentation is asked for it",
                    severity="warning",
                )
            )
        for policy, drug in matched:
            for package in catalog.current.values():
                # a Questionnaire already chosen by canonical or context comes
                # once, in that version (DTR oper-7: two versions of one form
                # would answer the same orders twice)
                url = package.questionnaire["url"]
                if package.policy is policy and package.drug == drug and url not in chosen_urls():
                    add(package)
    for chosen in selected.values():
        questionnaire = chosen.package.questionnaire
        issues.extend(_unpackaged_libraries(catalog, _canonical(questionnaire), questionnaire))
    bundles = []
    unchanged = 0
    for chosen in selected.values():
        questionnaire = chosen.package.questionnaire
        canonical = _canonical(questionnaire)
        value_sets = [catalog.value_sets[c] for c in value_set_canonicals(questionnaire)]
        libraries = [
            catalog.libraries[c]
            for c in library_canonicals(chosen.package.questionnaire)
            if c in catalog.libraries
        ]
        if request.changed_since is not None and not chosen.earlier:
            moments = [
                released_at(canonical),
                *(released_at(_canonical(r)) for r in [*libraries, *value_sets]),
            ]
            if all(m is not None and m <= request.changed_since for m in moments):
                unchanged += 1
                continue
        approvals = approved(member, chosen.package.policy.id) if member is not None else ()
        draft = draft_response(
            chosen.package,
            coverage=request.coverage,
            orders=request.orders,
            subject=request.member,
            history=history_of(catalog, approvals),
            earlier=chosen.earlier,
        )
        if chosen.adaptive:
            period = catalog.effective_period(chosen.package)
            draft = start(chosen.package, draft, as_of or now.date(), base, period)
            questionnaire = adaptive_questionnaire(chosen.package, base, period)
        current = canonical in catalog.current and not chosen.adaptive
        bundles.append(_bundle(questionnaire, draft, libraries + value_sets, current, base, now))
    for name in request.ignored:
        issues.append(
            Issue(
                "not-supported",
                f"parameter {name!r} is not an input of $questionnaire-package; it was ignored",
                severity="warning",
            )
        )
    if unchanged:
        issues.append(
            Issue(
                "informational",
                f"{unchanged} questionnaire package(s) unchanged since"
                f" {request.changed_since.isoformat() if request.changed_since else ''}",
                severity="information",
            )
        )
    if not any(issue.severity == "warning" for issue in issues):
        issues.append(
            Issue(
                "informational",
                f"{len(bundles)} questionnaire package(s) returned",
                severity="information",
            )
        )
    parameters: list[dict[str, Any]] = [
        {"name": "packagebundle", "resource": bundle} for bundle in bundles
    ]
    parameters.append({"name": "outcome", "resource": operation_outcome(issues)})
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [DTR_QPACKAGE_OUTPUT]},
        "parameter": parameters,
    }


CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"


def library_canonicals(questionnaire: dict[str, Any]) -> list[str]:
    """The Libraries a Questionnaire names with ``cqf-library``."""
    return [
        e["valueCanonical"]
        for e in questionnaire.get("extension", [])
        if e.get("url") == CQF_LIBRARY
    ]


def _unpackaged_libraries(
    catalog: Catalog, canonical: str, questionnaire: dict[str, Any]
) -> list[Issue]:
    """A warning for each Library a released Questionnaire names with
    ``cqf-library`` that is not a prepopulation Library: versions built
    before the scoring logic was kept out of the package reference it, and a
    released version is served as released."""
    current = next((c for c in catalog.current if c.split("|")[0] == questionnaire["url"]), None)
    return [
        Issue(
            "not-supported",
            f"{canonical} references Library {extension['valueCanonical']}: the payer's"
            " scoring definitions (FHIRPath), not packaged for a client to run"
            + (f"; the current version is {current.split('|')[1]}" if current else ""),
            severity="warning",
        )
        for extension in questionnaire.get("extension", [])
        if extension.get("url") == CQF_LIBRARY
        and extension["valueCanonical"] not in catalog.libraries
    ]


def served(questionnaire: dict[str, Any], base: str) -> dict[str, Any]:
    """The Questionnaire as this service serves it: its terminology server
    (``preferredTerminologyServer``, on the form and on each coded item) is
    the service's own public base, where its ValueSets are read and
    expanded, not the payer's base it was released with; everything else as
    released."""
    extensions = questionnaire.get("extension", [])
    if not any(e.get("url") in TERMINOLOGY_SERVERS for e in extensions):
        return questionnaire
    return {**_served(questionnaire, base), "item": _served_items(questionnaire["item"], base)}


def _served(element: dict[str, Any], base: str) -> dict[str, Any]:
    if "extension" not in element:
        return element
    return {
        **element,
        "extension": [
            {**e, "valueUrl": base} if e.get("url") in TERMINOLOGY_SERVERS else e
            for e in element["extension"]
        ],
    }


def _served_items(items: list[dict[str, Any]], base: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        item = _served(item, base)
        if "item" in item:
            item = {**item, "item": _served_items(item["item"], base)}
        out.append(item)
    return out


def _bundle(
    questionnaire: dict[str, Any],
    draft: dict[str, Any],
    dependencies: list[dict[str, Any]],
    current: bool,
    base: str,
    now: datetime,
) -> dict[str, Any]:
    """One DTR-QPackageBundle: Questionnaire, draft response, then its
    Libraries (CQL and ELM) and ValueSets (expanded when small)."""

    def full_url(resource: dict[str, Any]) -> str:
        return f"{base}/{resource['resourceType']}/{resource['id']}"

    entries = [
        {
            "fullUrl": full_url(questionnaire) if current else f"urn:uuid:{uuid.uuid4()}",
            "resource": served(questionnaire, base),
        },
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": draft},
    ]
    for resource in dependencies:
        if resource["resourceType"] == "ValueSet" and len(codings(resource)) < EXPAND_BELOW:
            resource = expanded(resource, now)
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource})
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [DTR_QPACKAGE_BUNDLE]},
        "type": "collection",
        "timestamp": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "entry": entries,
    }
