"""Coded answer lists as FHIR ValueSets.

Every choice question's options are published once, as a ValueSet with its
own ``url`` and ``version`` (the policy's Questionnaire version), and the
Questionnaire refers to it with ``answerValueSet`` ``url|version``: a DTR
payer packages every ValueSet its Questionnaires reference (DTR oper-14),
pre-expanded when small (oper-15), and a renderer expands them with
``ValueSet/$expand``. The codes are the policy's own (its sections and codes
systems) or the standard codes the policy file carries (NDC products); no
external terminology is needed to expand them.

Pure and deterministic, like ``build``: the stored ValueSet has a
``compose`` only; an expansion is timestamped when it is served
(:func:`expanded`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from builder.questionnaire import BuildError
from policies.index import index_policy
from policies.model import Policy
from policies.names import questionnaire_id, questionnaire_version, value_set_id, value_set_url

# DTR oper-15: a value set of fewer codes than this is expanded in the package
EXPAND_BELOW = 40


def value_sets(policy: Policy) -> list[dict[str, Any]]:
    """The ValueSets of every coded question of a policy's forms, each once.

    A question asked in several forms (initial and renewal) shares one
    ValueSet; the build refuses a policy whose forms would give one ValueSet
    two contents."""
    found: dict[str, dict[str, Any]] = {}
    first_form: dict[str, str] = {}  # ValueSet id → the Questionnaire that made it first
    for kind, drug in policy.forms():
        index = index_policy(policy, kind, drug)
        form = questionnaire_id(policy, kind, drug)
        for name, info in index.questions.items():
            if not info.options:
                continue
            codings = [index.coding(option) for option in info.options]
            resource = _value_set(policy, name, drug, info.question.text, codings)
            known = found.get(resource["id"])
            if known is not None and known != resource:
                raise BuildError(
                    f"{info.section}: question {name} offers different options in"
                    f" {first_form[resource['id']]} and {form}; give the options one list"
                )
            found[resource["id"]] = resource
            first_form.setdefault(resource["id"], form)
    return [found[key] for key in sorted(found)]


def published(policy: Policy) -> dict[str, dict[str, Any]]:
    """The policy's ValueSets by ``url|version``, as Questionnaires reference them."""
    return {f"{vs['url']}|{vs['version']}": vs for vs in value_sets(policy)}


def _value_set(
    policy: Policy, name: str, drug: str | None, text: str, codings: list[dict[str, str]]
) -> dict[str, Any]:
    vid = value_set_id(policy, name, drug)
    if len(vid) > 64:
        raise BuildError(
            f"question {name}: its ValueSet id {vid!r} is longer than FHIR's 64 characters;"
            " use a shorter question name"
        )
    identity = policy.policy
    includes: dict[str, list[dict[str, str]]] = {}
    for coding in codings:
        includes.setdefault(coding["system"], []).append(
            {"code": coding["code"], "display": coding["display"]}
        )
    return {
        "resourceType": "ValueSet",
        "id": vid,
        "url": value_set_url(policy, name, drug),
        "version": questionnaire_version(policy),
        "name": "".join(part.capitalize() for part in vid.replace("-", " ").split()),
        "title": f"Answers: {text}",
        "status": "active",
        "experimental": False,
        **({"date": identity.date_text} if identity.date_text else {}),
        "publisher": identity.payer.name,
        "description": (
            f"The answers to question {name} of {identity.payer.name} policy"
            f" {identity.number or identity.id} (version {identity.version})."
        ),
        "compose": {
            "include": [
                {"system": system, "concept": concepts} for system, concepts in includes.items()
            ]
        },
    }


def codings(value_set: dict[str, Any]) -> list[dict[str, str]]:
    """The codes of a ValueSet's compose (every ValueSet here enumerates its codes)."""
    return [
        {"system": include["system"], "code": concept["code"], "display": concept["display"]}
        for include in value_set["compose"]["include"]
        for concept in include["concept"]
    ]


def expanded(value_set: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The ValueSet with its expansion as of ``now`` (a timezone-aware instant)."""
    contains = codings(value_set)
    result = dict(value_set)
    result["expansion"] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "total": len(contains),
        "contains": contains,
    }
    return result


def inline_options(
    items: list[dict[str, Any]], value_sets: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Items with each ``answerValueSet`` replaced by the ``answerOption`` list
    it stands for: how a Questionnaire built before the answer lists were
    published compares with today's build of the same policy version."""
    out = []
    for item in items:
        item = dict(item)
        canonical = item.pop("answerValueSet", None)
        if canonical is not None and canonical in value_sets:
            item["answerOption"] = [
                {"valueCoding": coding} for coding in codings(value_sets[canonical])
            ]
        elif canonical is not None:
            item["answerValueSet"] = canonical
        if "item" in item:
            item["item"] = inline_options(item["item"], value_sets)
        out.append(item)
    return out
