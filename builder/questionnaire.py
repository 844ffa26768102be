"""Policy → FHIR R4 Questionnaire (SDC, Da Vinci DTR 2.2.0 standard questionnaire):
the JSON emitter. What it lays out — the request's tree of criteria, the
question index, the names and URLs — is the policy's meaning, in
:mod:`policies`; this module only writes it as FHIR items.

``build(policy, kind)`` is a pure function: the same policy data always gives
the same JSON (no clock, no randomness), so generated files can be committed
and checked for drift. Each criterion becomes a group whose ``prefix`` is its
section id and whose text is the policy text; its questions follow inside.
Every item that captures a criterion carries an ``item.code`` in the policy's
sections code system, and ``enableWhen`` mirrors when the policy makes a
question relevant.
"""

from __future__ import annotations

import re
from typing import Any

from builder.prepopulation import Compiled, initial_expression, questionnaire_extensions, sources
from policies.index import (
    PolicyIndex,
    index_policy,
)
from policies.model import (
    AnyOf,
    Condition,
    Node,
    Policy,
    Question,
    RequestKind,
    expression_variables,
)
from policies.names import (
    questionnaire_id,
    questionnaire_url,
    questionnaire_version,
    record_only_url,
)
from policies.tree import (
    request_tree,
)
from questionnaires.checks import iter_items

DTR_STD_QUESTIONNAIRE = (
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-std-questionnaire"
)
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
CITATION = "http://hl7.org/fhir/StructureDefinition/cqf-citation"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
ENABLE_WHEN_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"
)
UCUM = "http://unitsofmeasure.org"


_ANSWER_KEY = {
    "boolean": "answerBoolean",
    "integer": "answerInteger",
    "decimal": "answerDecimal",
    "date": "answerDate",
    "string": "answerString",
    "text": "answerString",
    "choice": "answerCoding",
}
_FHIR_TYPE = {"text": "text", "choice": "choice"}
# The terminology-server extension under both urls renderers read: the core
# one DTR 2.2.0's must-support slice names, and SDC's.
TERMINOLOGY_SERVERS = (
    "http://hl7.org/fhir/StructureDefinition/preferredTerminologyServer",
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-preferredTerminologyServer",
)
ITEM_TERMINOLOGY_SERVER = TERMINOLOGY_SERVERS[1]
# An attestation the prescriber signs: the signature type is the author's
# (ASTM E1762), as the prescriber states what the attestation says.
SIGNATURE_REQUIRED = "http://hl7.org/fhir/StructureDefinition/questionnaire-signatureRequired"
AUTHOR_SIGNATURE = {
    "coding": [
        {
            "system": "urn:iso-astm:E1762-95:2013",
            "code": "1.2.840.10065.1.12.1.1",
            "display": "Author's Signature",
        }
    ]
}


def build(
    policy: Policy, kind: RequestKind, drug: str | None = None, compiled: Compiled | None = None
) -> dict[str, Any]:
    """The Questionnaire for ``kind`` requests (of ``drug``, in a policy of
    several drugs) under ``policy``, as FHIR JSON. ``compiled`` is the
    policy's translated prepopulation Library
    (:class:`builder.prepopulation.Compiled`): with it, the questions an EHR
    can answer carry their CQL ``initialExpression``; without it, none does
    (what the build-time verification needs)."""
    index = index_policy(policy, kind, drug)
    identity = policy.policy
    request = policy.request(kind)
    qid = questionnaire_id(policy, kind, drug)
    try:
        items = _items(request_tree(policy, kind, drug), index, [])
    except BuildError as exc:
        # in a policy of several drugs or request types a criterion may build
        # in one form and not in another: say which
        raise BuildError(f"{qid}: {exc}") from None
    title = f"{identity.title}: {request.title}"
    if drug is not None:
        title = f"{identity.title} — {policy.drug(drug).name}: {request.title}"
    if identity.number:
        title = f"{identity.number} {title}"
    description = (
        f"{request.title} for a prior authorization of {policy.drug(drug).name} under "
        f"{identity.payer.name} policy {identity.number or identity.id} "
        f"(version {identity.version}, {identity.date_text or 'undated'}). "
        f"Each question's code names the policy section it captures, in {identity.sections_system}."
    )
    questionnaire: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": qid,
        "meta": {"profile": [DTR_STD_QUESTIONNAIRE]},
        # The scoring definitions (Library ``*-logic``) stay the payer's: they
        # are not referenced with cqf-library, which DTR reserves for the CQL
        # Libraries a client executes.
        "extension": [{"url": CITATION, "valueString": identity.source}],
        "url": questionnaire_url(policy, kind, drug),
        "identifier": [
            {
                "system": f"{identity.canonical_base}/policy-number",
                "value": identity.number or identity.id,
            }
        ],
        "version": questionnaire_version(policy),
        "name": "".join(part.capitalize() for part in qid.replace("-", " ").split()),
        "title": title,
        "status": "active",
        "subjectType": ["Patient"],
        **({"date": identity.date_text} if identity.date_text else {}),
        "publisher": identity.payer.name,
        "description": description,
        "item": items,
    }
    coded = [item for item, _ in iter_items(items) if "answerValueSet" in item]
    if coded:
        # where a renderer expands each answerValueSet (LHC-Forms resolves
        # every one through it): the payer's FHIR base, as released; the
        # service names its own public base when it serves the form
        # (qpackage.package.served). Said on the form, under both urls, and
        # on each coded item (SDC's, which applies to the item): LHC-Forms
        # forgets the form's setting when a client merges prefilled answers
        # into it (mergeFHIRDataIntoLForms), an item's it keeps.
        questionnaire["extension"] += [
            {"url": url, "valueUrl": identity.canonical_base} for url in TERMINOLOGY_SERVERS
        ]
        for item in coded:
            item["extension"] = [
                *item.get("extension", []),
                {"url": ITEM_TERMINOLOGY_SERVER, "valueUrl": identity.canonical_base},
            ]
    if compiled is not None:
        _prepopulate(questionnaire, policy, index, compiled)
    return questionnaire


def _prepopulate(
    questionnaire: dict[str, Any], policy: Policy, index: PolicyIndex, compiled: Compiled
) -> None:
    """Launch contexts, the Library and each prefilled item's initialExpression."""

    names = {info.link_id: name for name, info in index.questions.items()}
    prefilled = set(sources(policy))
    items = [
        item
        for item, _ in iter_items(questionnaire["item"])
        if names.get(item["linkId"]) in prefilled
    ]
    if not items:
        return
    questionnaire["extension"] += questionnaire_extensions(policy, compiled)
    for item in items:
        item["extension"] = [
            *item.get("extension", []),
            initial_expression(policy, compiled, names[item["linkId"]]),
        ]


def _items(
    nodes: list[Node], index: PolicyIndex, inherited: list[Condition]
) -> list[dict[str, Any]]:
    items = (_node_item(node, index, inherited) for node in nodes)
    return [item for item in items if item is not None]


def _node_item(node: Node, index: PolicyIndex, inherited: list[Condition]) -> dict[str, Any] | None:
    try:
        return _node_item_of(node, index, inherited)
    except BuildError:
        raise
    except ValueError as exc:
        where = node.link_id if isinstance(node, AnyOf) else node.id
        raise BuildError(f"{where}: {exc}") from None


class BuildError(ValueError):
    """A policy the builder cannot turn into a Questionnaire; the message
    starts with the section it is about."""


def _node_item_of(
    node: Node, index: PolicyIndex, inherited: list[Condition]
) -> dict[str, Any] | None:
    if isinstance(node, AnyOf):
        item: dict[str, Any] = {
            "linkId": node.link_id,
            "text": "One of the following is required",
            "type": "group",
        }
        _add_enable_when(item, inherited, "all", index)
        item["item"] = _items(list(node.any_of), index, [])
        return item
    criterion = node
    item = {
        "linkId": criterion.id,
        "code": [index.section_coding(criterion.id)],
        "prefix": criterion.id,
        "text": criterion.text,
        "type": "group",
    }
    if criterion.text == criterion.id:
        del item["prefix"]  # a branch named by its id (Mekinist "Melanoma") reads it once
    conditions = [*inherited, *criterion.enable_when]
    behavior = criterion.enable_behavior if criterion.enable_when else "all"
    if criterion.enable_when and inherited and behavior == "any":
        raise ValueError(
            f"{criterion.id}: enable_behavior any cannot combine with inherited conditions"
        )
    _add_enable_when(item, conditions, behavior, index)
    if criterion.enable_when_expression is not None:
        if conditions:  # refused when the policy is read (policies.consistency)
            raise ValueError(f"{criterion.id}: enable_when_expression beside enableWhen")
        item["extension"] = enable_when_expression_extensions(
            criterion.enable_when_expression, index
        )
    children: list[dict[str, Any]] = [_question_item(q, index) for q in criterion.questions]
    children.extend(_items(criterion.children, index, list(criterion.children_enable_when)))
    if not children:
        if not conditions:
            # A criterion decided only from answers given elsewhere (Mekinist's
            # age for each indication) and always applicable needs no group.
            return None
        # Its conditions must still reach both the form and the scoring (a
        # branch that applies only to one indication): the group shows the
        # criterion's text, and its enablement decides whether it applies.
        children.append(
            {
                "linkId": f"{criterion.id}.text",
                "text": "Decided from the answers given above: nothing to answer here.",
                "type": "display",
            }
        )
    item["item"] = children
    return item


def variable_name(name: str) -> str:
    """A question's name as an SDC variable's: ``Expression.name`` is an
    ``id`` (no underscore), so ``lvef_baseline`` becomes ``lvefBaseline``."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def answer_variable(name: str, link_id: str) -> dict[str, Any]:
    """SDC ``variable``: the answer to the item ``link_id``, as the scorer
    reads the question's ``%name``."""
    return {
        "url": VARIABLE,
        "valueExpression": {
            "name": variable_name(name),
            "language": "text/fhirpath",
            "expression": f"%resource.repeat(item).where(linkId='{link_id}').answer.value",
        },
    }


def enable_when_expression_extensions(expression: str, index: PolicyIndex) -> list[dict[str, Any]]:
    """A criterion's ``enable_when_expression`` as SDC ``enableWhenExpression``
    (FHIRPath, DTR ``spec-61``), each ``%name`` it reads bound by a
    ``variable`` on the same item to that question's answer (the scorer reads
    the expression back through them: ``cql_like.definitions``)."""
    names = sorted(expression_variables(expression))
    renamed = {name: variable_name(name) for name in names}
    if len(set(renamed.values())) < len(names) or set(renamed.values()) & (
        set(index.questions) - set(names)
    ):
        raise ValueError(f"enable_when_expression: its variable names collide: {renamed}")
    written = re.sub(
        r"%([a-z][a-z0-9_]*)\b",
        lambda match: "%" + renamed.get(match.group(1), match.group(1)),
        expression,
    )
    return [
        *(answer_variable(name, index.questions[name].link_id) for name in names),
        {
            "url": ENABLE_WHEN_EXPRESSION,
            "valueExpression": {"language": "text/fhirpath", "expression": written},
        },
    ]


def _question_item(question: Question, index: PolicyIndex) -> dict[str, Any]:
    info = index.questions[question.name]
    item: dict[str, Any] = {"linkId": info.link_id}
    extensions: list[dict[str, Any]] = []
    if question.type == "choice":
        extensions.append(
            {
                "url": ITEM_CONTROL,
                "valueCodeableConcept": {
                    "coding": [
                        # a multi-select shows check boxes, one answer radio buttons
                        {"system": ITEM_CONTROL_SYSTEM, "code": "check-box", "display": "Check-box"}
                        if question.repeats
                        else {
                            "system": ITEM_CONTROL_SYSTEM,
                            "code": "radio-button",
                            "display": "Radio Button",
                        }
                    ]
                },
            }
        )
    value_key = "valueInteger" if question.type == "integer" else "valueDecimal"
    if question.min_value is not None:
        extensions.append({"url": MIN_VALUE, value_key: _number(question, question.min_value)})
    if question.max_value is not None:
        extensions.append({"url": MAX_VALUE, value_key: _number(question, question.max_value)})
    if question.unit is not None:
        extensions.append(
            {
                "url": UNIT,
                "valueCoding": {"system": UCUM, "code": question.unit, "display": question.unit},
            }
        )
    if question.record_only:
        extensions.append({"url": record_only_url(index.policy), "valueBoolean": True})
    if question.signature_required:
        extensions.append({"url": SIGNATURE_REQUIRED, "valueCodeableConcept": AUTHOR_SIGNATURE})
    if extensions:
        item["extension"] = extensions
    item["code"] = [index.section_coding(section) for section in info.sections]
    item["text"] = question.text
    item["type"] = _FHIR_TYPE.get(question.type, question.type)
    _add_enable_when(item, list(question.enable_when), question.enable_behavior, index)
    item["required"] = question.is_required
    if question.repeats:
        item["repeats"] = True
    if info.options:
        # published as a ValueSet (see builder/valuesets.py), never inline:
        # DTR packages every ValueSet a Questionnaire references, version-specific
        item["answerValueSet"] = index.value_set(question.name)
    return item


def _number(question: Question, value: float) -> int | float:
    return int(value) if question.type == "integer" else value


def _add_enable_when(
    item: dict[str, Any], conditions: list[Condition], behavior: str, index: PolicyIndex
) -> None:
    if not conditions:
        return
    item["enableWhen"] = [_enable_when(condition, index) for condition in conditions]
    if len(conditions) > 1:
        item["enableBehavior"] = behavior


def _enable_when(condition: Condition, index: PolicyIndex) -> dict[str, Any]:
    info = index.questions.get(condition.question)
    if info is None:
        raise ValueError(
            f"enable_when: {condition.question} is not asked in this Questionnaire, so the"
            " condition could reach neither the form nor the scoring"
        )
    entry: dict[str, Any] = {"question": info.link_id, "operator": condition.operator}
    if condition.operator == "exists":
        entry["answerBoolean"] = condition.answer
        return entry
    qtype = info.question.type
    if qtype == "choice":
        option = next(o for o in info.options if o.key == condition.answer)
        entry["answerCoding"] = index.coding(option)
    elif qtype == "date":
        entry["answerDate"] = str(condition.answer)
    elif qtype == "decimal":
        entry["answerDecimal"] = condition.answer
    else:
        entry[_ANSWER_KEY[qtype]] = condition.answer
    return entry
