"""Policy → FHIR R4 Questionnaire (SDC, Da Vinci DTR 2.2.0 standard questionnaire).

``build(policy, kind)`` is a pure function: the same policy data always gives
the same JSON (no clock, no randomness), so generated files can be committed
and checked for drift. Each criterion becomes a group whose ``prefix`` is its
section id and whose text is the policy text; its questions follow inside.
Every item that captures a criterion carries an ``item.code`` in the policy's
sections code system, and ``enableWhen`` mirrors when the policy makes a
question relevant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from builder.policy import (
    AnyOf,
    Condition,
    Criterion,
    Investigational,
    Node,
    Option,
    Policy,
    Question,
    RequestKind,
    expression_variables,
    walk,
)

# Bump when what the builder emits changes for an unchanged policy version:
# the Questionnaire version is ``{policy version}-r{BUILDER_REVISION}``, and a
# canonical url|version must never name two different contents.
BUILDER_REVISION = 1

DTR_STD_QUESTIONNAIRE = (
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-std-questionnaire"
)
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
CITATION = "http://hl7.org/fhir/StructureDefinition/cqf-citation"
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"
UCUM = "http://unitsofmeasure.org"

# Questions the builder adds to every Questionnaire from the quantity limits.
REQUESTED_PRODUCT = "requested_product"
REQUESTED_QUANTITY = "requested_quantity"

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


def questionnaire_id(policy: Policy, kind: RequestKind) -> str:
    return f"{policy.id}-{kind}"


def questionnaire_version(policy: Policy) -> str:
    return f"{policy.policy.version}-r{BUILDER_REVISION}"


def questionnaire_url(policy: Policy, kind: RequestKind) -> str:
    return f"{policy.policy.canonical_base}/Questionnaire/{questionnaire_id(policy, kind)}"


def library_id(policy: Policy, kind: RequestKind) -> str:
    """The Library carrying the scoring definitions (see ``cql_like``)."""
    return f"{questionnaire_id(policy, kind)}-logic"


def library_url(policy: Policy, kind: RequestKind) -> str:
    return f"{policy.policy.canonical_base}/Library/{library_id(policy, kind)}"


def question_link_id(section: str, name: str) -> str:
    return f"{section}.{name}"


@dataclass(frozen=True)
class QuestionInfo:
    """Where a question stands in the generated Questionnaire and what it captures."""

    question: Question
    link_id: str
    section: str
    options: tuple[Option, ...]
    sections: tuple[str, ...]


@dataclass
class PolicyIndex:
    """Lookups the builder and the scorer share: questions by name, their
    linkIds, options (with investigational answers added) and cited sections."""

    policy: Policy
    questions: dict[str, QuestionInfo] = field(default_factory=dict)
    section_text: dict[str, str] = field(default_factory=dict)

    def coding(self, option: Option) -> dict[str, str]:
        if option.section is not None:
            return {
                "system": self.policy.policy.sections_system,
                "code": option.section,
                "display": option.display,
            }
        return {
            "system": option.system or self.policy.policy.codes_system,
            "code": option.code or "",
            "display": option.display,
        }

    def section_coding(self, section: str) -> dict[str, str]:
        return {
            "system": self.policy.policy.sections_system,
            "code": section,
            "display": self.section_text[section],
        }


def quantity_questions(policy: Policy) -> list[Question]:
    """The request's product and quantity, generated from the quantity limits."""
    limits = policy.quantity_limits.limits
    period = limits[0].period_days
    units = sorted({limit.unit for limit in limits})
    questions = []
    if len(limits) > 1:
        questions.append(
            Question(
                name=REQUESTED_PRODUCT,
                type="choice",
                text="Product requested",
                options=[
                    Option(code=lim.code.code, system=lim.code.system, display=lim.product)
                    for lim in limits
                    if lim.code is not None
                ],
            )
        )
    questions.append(
        Question(
            name=REQUESTED_QUANTITY,
            type="integer",
            text=f"Quantity requested per {period} days ({' or '.join(units)})",
            min_value=1,
        )
    )
    return questions


def quantity_limit_definition(policy: Policy) -> str:
    """The QL scoring definition, derived from the limits (written once, as data)."""
    limits = policy.quantity_limits.limits
    if len(limits) == 1:
        return f"%{REQUESTED_QUANTITY} <= {limits[0].quantity}"
    return " or ".join(
        f"(%{REQUESTED_PRODUCT}.code = '{lim.code.code}'"
        f" and %{REQUESTED_QUANTITY} <= {lim.quantity})"
        for lim in limits
        if lim.code is not None
    )


def quantity_criterion(policy: Policy) -> Criterion:
    ql = policy.quantity_limits
    return Criterion(
        id=ql.id,
        text=ql.text,
        questions=quantity_questions(policy),
        met=quantity_limit_definition(policy),
        ruling=ql.ruling,
    )


def request_tree(policy: Policy, kind: RequestKind) -> list[Node]:
    """The criteria a request of this kind is decided by: the quantity limit,
    then the policy's criteria (renewal ``include: initial`` expanded)."""
    return [
        quantity_criterion(policy),
        *[_expand(node, policy) for node in policy.request(kind).criteria],
    ]


def _expand(node: Node, policy: Policy) -> Node:
    if isinstance(node, AnyOf):
        return AnyOf(any_of=[_expand_criterion(c, policy) for c in node.any_of])
    return _expand_criterion(node, policy)


def _expand_criterion(criterion: Criterion, policy: Policy) -> Criterion:
    if criterion.include == "initial":
        return criterion.model_copy(
            update={"include": None, "children": list(policy.initial.criteria)}
        )
    if criterion.children:
        return criterion.model_copy(
            update={"children": [_expand(child, policy) for child in criterion.children]}
        )
    return criterion


def index_policy(policy: Policy, kind: RequestKind) -> PolicyIndex:
    index = PolicyIndex(policy)
    tree = request_tree(policy, kind)
    criteria = list(walk(tree))
    for criterion in criteria:
        index.section_text[criterion.id] = criterion.text
    investigational = policy.investigational
    extra_options: dict[str, list[Option]] = {}
    if investigational is not None:
        index.section_text[investigational.id] = investigational.text
        for condition in investigational.all_conditions():
            index.section_text.setdefault(condition.id, condition.text)
            if condition.answer_of:
                extra_options.setdefault(condition.answer_of, []).append(
                    Option(section=condition.id, display=condition.display or condition.text)
                )
    readers = _readers(criteria, investigational)
    for criterion in criteria:
        for question in criterion.questions:
            sections = tuple(readers.get(question.name, ()))
            if not sections:
                raise ValueError(
                    f"{policy.id}: question {question.name} ({criterion.id}) is read by no"
                    " criterion"
                )
            index.questions[question.name] = QuestionInfo(
                question=question,
                link_id=question_link_id(criterion.id, question.name),
                section=criterion.id,
                options=(*question.options, *extra_options.get(question.name, [])),
                sections=sections,
            )
    return index


def _readers(
    criteria: list[Criterion], investigational: Investigational | None
) -> dict[str, list[str]]:
    """Question name → the sections whose definitions read its answer."""
    readers: dict[str, list[str]] = {}
    for criterion in criteria:
        for name in sorted(expression_variables(criterion.met or "")):
            readers.setdefault(name, []).append(criterion.id)
    if investigational is not None:
        for condition in investigational.all_conditions():
            names = expression_variables(condition.applies or "")
            if condition.answer_of:
                names.add(condition.answer_of)
            for name in sorted(names):
                readers.setdefault(name, []).append(condition.id)
    return readers


def build(policy: Policy, kind: RequestKind) -> dict[str, Any]:
    """The Questionnaire for ``kind`` requests under ``policy``, as FHIR JSON."""
    index = index_policy(policy, kind)
    identity = policy.policy
    request = policy.request(kind)
    qid = questionnaire_id(policy, kind)
    title = f"{identity.title}: {request.title}"
    if identity.number:
        title = f"{identity.number} {title}"
    description = (
        f"{request.title} for a prior authorization of {identity.title} under "
        f"{identity.payer.name} policy {identity.number or identity.id} "
        f"(version {identity.version}, {identity.date.isoformat()}). "
        f"Each question's code names the policy section it captures, in {identity.sections_system}."
    )
    questionnaire: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": qid,
        "meta": {"profile": [DTR_STD_QUESTIONNAIRE]},
        "extension": [
            {"url": CITATION, "valueString": identity.source},
            {
                "url": CQF_LIBRARY,
                "valueCanonical": f"{library_url(policy, kind)}|{questionnaire_version(policy)}",
            },
        ],
        "url": questionnaire_url(policy, kind),
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
        "date": identity.date.isoformat(),
        "publisher": identity.payer.name,
        "description": description,
        "item": _items(request_tree(policy, kind), index, []),
    }
    return questionnaire


def _items(
    nodes: list[Node], index: PolicyIndex, inherited: list[Condition]
) -> list[dict[str, Any]]:
    items = (_node_item(node, index, inherited) for node in nodes)
    return [item for item in items if item is not None]


def _node_item(node: Node, index: PolicyIndex, inherited: list[Condition]) -> dict[str, Any] | None:
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
    children: list[dict[str, Any]] = [_question_item(q, index) for q in criterion.questions]
    if criterion.documentation:
        children.append(
            {
                "linkId": f"{criterion.id}.documentation",
                "code": [index.section_coding(criterion.id)],
                "text": f"{criterion.documentation} (attach if available)",
                "type": "attachment",
                "required": False,
            }
        )
    children.extend(_items(criterion.children, index, list(criterion.children_enable_when)))
    if not children:
        # A criterion decided only from answers given elsewhere (Mekinist's age
        # for each indication) has no group of its own; the question it reads
        # carries its code instead.
        return None
    item["item"] = children
    return item


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
                        {
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
    if extensions:
        item["extension"] = extensions
    item["code"] = [index.section_coding(section) for section in info.sections]
    item["text"] = question.text
    item["type"] = _FHIR_TYPE.get(question.type, question.type)
    _add_enable_when(item, list(question.enable_when), question.enable_behavior, index)
    item["required"] = question.is_required
    if info.options:
        item["answerOption"] = [{"valueCoding": index.coding(option)} for option in info.options]
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
    info = index.questions[condition.question]
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
