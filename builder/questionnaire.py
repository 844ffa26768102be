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
from typing import Any, Literal

from builder.policy import (
    CAP_SECTION,
    DOCUMENT_PREFIX,
    PLANNED_MONTHS,
    PRIOR_RENEWALS,
    REQUESTED_DAILY_DOSE,
    REQUESTED_PRODUCT,
    REQUESTED_QUANTITY,
    TERM_SECTION,
    THERAPY_START,
    AnyOf,
    Condition,
    Criterion,
    Investigational,
    Node,
    Option,
    Policy,
    QuantityLimit,
    Question,
    RequestKind,
    document_question,
    expression_variables,
    walk,
)
from cql_like.gateway import join_terms

# Bump when what the builder emits changes for an unchanged policy version:
# the Questionnaire version is ``{policy version}-r{BUILDER_REVISION}``, and a
# canonical url|version must never name two different contents.
BUILDER_REVISION = 3

DTR_STD_QUESTIONNAIRE = (
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-std-questionnaire"
)
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
CITATION = "http://hl7.org/fhir/StructureDefinition/cqf-citation"
UCUM = "http://unitsofmeasure.org"


def record_only_url(policy: Policy) -> str:
    """The extension marking a question that informs the reviewer and decides nothing."""
    return f"{policy.policy.canonical_base}/StructureDefinition/record-only"


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


def questionnaire_id(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.id}-{drug}-{kind}" if drug else f"{policy.id}-{kind}"


def questionnaire_version(policy: Policy) -> str:
    return f"{policy.policy.version}-r{BUILDER_REVISION}"


def questionnaire_url(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/Questionnaire/{questionnaire_id(policy, kind, drug)}"


def library_id(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    """The Library carrying the scoring definitions (see ``cql_like``)."""
    return f"{questionnaire_id(policy, kind, drug)}-logic"


def library_url(policy: Policy, kind: RequestKind, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/Library/{library_id(policy, kind, drug)}"


def value_set_id(policy: Policy, name: str, drug: str | None = None) -> str:
    """The ValueSet of a coded question's answers: one per question of the
    policy (per drug, in a policy of several drugs), shared by its forms."""
    parts = [policy.id, *([drug] if drug else []), name]
    return "-".join(parts).replace("_", "-")


def value_set_url(policy: Policy, name: str, drug: str | None = None) -> str:
    return f"{policy.policy.canonical_base}/ValueSet/{value_set_id(policy, name, drug)}"


def question_link_id(section: str, name: str) -> str:
    if name.startswith(DOCUMENT_PREFIX):
        return f"{section}.documentation"
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
    drug: str | None = None
    questions: dict[str, QuestionInfo] = field(default_factory=dict)
    section_text: dict[str, str] = field(default_factory=dict)

    def value_set(self, name: str) -> str:
        """The ``url|version`` of a coded question's ValueSet."""
        return f"{value_set_url(self.policy, name, self.drug)}|{questionnaire_version(self.policy)}"

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


def applicable_limits(policy: Policy, drug: str | None) -> list[QuantityLimit]:
    """The quantity limits of one drug's Questionnaires (a policy of one drug
    has one set of forms: a limit naming that drug is among them, as a
    criterion naming it is)."""
    if policy.quantity_limits is None:
        return []
    return [
        lim
        for lim in policy.quantity_limits.limits
        if drug is None or lim.drug is None or lim.drug == drug
    ]


def product_limits(limits: list[QuantityLimit]) -> list[QuantityLimit]:
    """One limit per distinct product code, in order (the product question's options)."""
    seen: dict[str, QuantityLimit] = {}
    for lim in limits:
        if lim.code is not None:
            seen.setdefault(lim.code.code, lim)
    return list(seen.values())


def quantity_questions(
    limits: list[QuantityLimit], dose_above_zero: bool = False
) -> list[Question]:
    """The request's product, quantity and daily dose, generated from the limits.
    ``dose_above_zero``: a dose of 0 or below is a data error that pends (a
    policy stating ``over_dose``), not a dose of 0 within the limit."""
    period = limits[0].period_days
    units = sorted({limit.unit for limit in limits})
    questions = []
    products = product_limits(limits)
    if len(products) > 1:
        questions.append(
            Question(
                name=REQUESTED_PRODUCT,
                type="choice",
                text="Product requested",
                options=[
                    Option(code=lim.code.code, system=lim.code.system, display=lim.product)
                    for lim in products
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
    dose_units = sorted({lim.daily_dose.unit for lim in limits if lim.daily_dose is not None})
    if dose_units:
        questions.append(
            Question(
                name=REQUESTED_DAILY_DOSE,
                type="decimal",
                text=f"Prescribed daily dose ({' or '.join(dose_units)} per day)",
                unit=f"{dose_units[0]}/d",
                # a dose of 0 or below: a data error the request pends for, or
                # (policies built before `over_dose`) refused below 0
                **({"above": 0} if dose_above_zero else {"min_value": 0}),
            )
        )
    return questions


def limit_guard(limit: QuantityLimit, several_products: bool) -> str | None:
    """FHIRPath: true when this limit applies to the request (its product, its
    indication); None when it always applies."""
    parts = []
    if several_products and limit.code is not None:
        parts.append(f"%{REQUESTED_PRODUCT}.code = '{limit.code.code}'")
    parts.extend(condition_expression(c) for c in limit.when)
    return " and ".join(f"({p})" for p in parts) if parts else None


def within_limit(limit: QuantityLimit) -> str:
    test = f"%{REQUESTED_QUANTITY} <= {limit.max_units}"
    if limit.daily_dose is not None:
        test += f" and %{REQUESTED_DAILY_DOSE} <= {limit.daily_dose.amount:g}"
    return test


def quantity_limit_definition(limits: list[QuantityLimit]) -> str:
    """Within every limit that applies (written once, as data): three-valued, so
    an unanswered quantity, or a limit whose applicability is unknown and which
    the quantity exceeds, is unknown."""
    several = len(product_limits(limits)) > 1
    # the product approved must be known, even when every limit is kept
    parts = [f"(%{REQUESTED_PRODUCT}.exists() or {{}})"] if several else []
    for limit in limits:
        guard = limit_guard(limit, several)
        test = within_limit(limit)
        parts.append(f"({test})" if guard is None else f"(({guard}) implies ({test}))")
    return join_terms(parts, "and")


def condition_expression(condition: Condition) -> str:
    """One data condition (enable_when, a limit's `when`) as FHIRPath over the
    answers, false when unanswered (as enableWhen is)."""
    answer = f"%{condition.question}"
    value = condition.answer
    if condition.operator == "exists":
        return f"{answer}.exists()" if value else f"{answer}.empty()"
    if isinstance(value, bool):
        literal = str(value).lower()
    elif isinstance(value, int | float):
        literal = f"{value:g}" if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        # choice answers compare by code: the input checks admit only offered codings
        test = f"{answer}.code contains '{value}'"
        return test if condition.operator == "=" else f"{answer}.exists() and ({test}).not()"
    else:
        literal = f"@{value.isoformat()}"
    return f"{answer}.exists() and {answer} {condition.operator} {literal}"


def dose_limit_definition(limits: list[QuantityLimit]) -> str | None:
    """The prescribed daily dose within every daily-dose limit that applies;
    None when no limit is a daily dose."""
    several = len(product_limits(limits)) > 1
    parts = []
    for limit in limits:
        if limit.daily_dose is None:
            continue
        test = f"%{REQUESTED_DAILY_DOSE} <= {limit.daily_dose.amount:g}"
        guard = limit_guard(limit, several)
        parts.append(f"({test})" if guard is None else f"(({guard}) implies ({test}))")
    return join_terms(parts, "and") if parts else None


def quantity_criterion(policy: Policy, limits: list[QuantityLimit]) -> Criterion:
    ql = policy.quantity_limits
    assert ql is not None
    questions = quantity_questions(limits, dose_above_zero=ql.over_dose is not None)
    kind: Literal["criterion", "information"] = "criterion"
    if ql.over_limit == "deny":
        met = quantity_limit_definition(limits)
    else:
        # modified to the limit when over it: the quantity only has to be
        # known; a dose cannot be modified, so a dose limit still decides
        # (where the policy says how: `over_dose`)
        known = " and ".join(f"(%{q.name}.exists() or {{}})" for q in questions if q.is_required)
        dose = dose_limit_definition(limits) if ql.over_dose is not None else None
        met = known if dose is None else f"{known} and {dose}"
        if dose is None:
            kind = "information"
    return Criterion(
        id=ql.id,
        text=ql.text,
        kind=kind,
        questions=questions,
        met=met,
        on_unmet="review" if ql.over_dose == "review" else "deny",
        ruling=ql.ruling,
    )


def term_criterion(policy: Policy, kind: RequestKind) -> Criterion | None:
    term = policy.authorization.term(kind)
    if not term.lesser_of_planned:
        return None
    return Criterion(
        id=TERM_SECTION,
        kind="information",
        text=(
            "Length of authorization: the lesser of the planned length of therapy and"
            f" {term.months} months"
        ),
        questions=[
            Question(
                name=PLANNED_MONTHS,
                type="integer",
                text="Planned length of therapy (months)",
                unit="mo",
                min_value=1,
            )
        ],
        met=f"%{PLANNED_MONTHS}.exists() or {{}}",
    )


def cap_criterion(policy: Policy, kind: RequestKind) -> Criterion | None:
    term = policy.authorization.term(kind)
    questions, tests, texts = [], [], []
    if term.max_renewals is not None:
        questions.append(
            Question(
                name=PRIOR_RENEWALS,
                type="integer",
                text="How many renewals of this authorization has this plan approved?",
                min_value=0,
            )
        )
        tests.append(f"%{PRIOR_RENEWALS} < {term.max_renewals}")
        texts.append(f"at most {term.max_renewals} renewals")
    if term.max_total_months is not None:
        questions.append(
            Question(name=THERAPY_START, type="date", text="Date the member started this therapy")
        )
        tests.append(f"%{THERAPY_START} + {term.max_total_months} months > %as_of")
        texts.append(f"at most {term.max_total_months} months of therapy in all")
    if not questions:
        return None
    return Criterion(
        id=CAP_SECTION,
        text=f"Limit on continued therapy: {' and '.join(texts)}",
        questions=questions,
        met=" and ".join(f"({t})" for t in tests),
    )


def request_tree(policy: Policy, kind: RequestKind, drug: str | None = None) -> list[Node]:
    """The criteria a request of this kind (for this drug) is decided by: the
    quantity limit, the policy's criteria that apply to the drug (renewal
    ``include: initial`` expanded, documentation turned into its attachment
    question), then the length and cap of the authorization."""
    nodes: list[Node] = []
    limits = applicable_limits(policy, drug)
    if limits:
        nodes.append(quantity_criterion(policy, limits))
    for node in policy.request(kind).criteria:
        expanded = _expand(node, policy, drug)
        if expanded is not None:
            nodes.append(expanded)
    nodes.extend(c for c in (cap_criterion(policy, kind), term_criterion(policy, kind)) if c)
    return nodes


def _applies_to(criterion: Criterion, drug: str | None) -> bool:
    return drug is None or not criterion.drugs or drug in criterion.drugs


def _expand(node: Node, policy: Policy, drug: str | None) -> Node | None:
    if isinstance(node, AnyOf):
        options = [
            c for c in (_expand_criterion(c, policy, drug) for c in node.any_of) if c is not None
        ]
        if not options:
            return None
        return options[0] if len(options) == 1 else AnyOf(any_of=options)
    return _expand_criterion(node, policy, drug)


def _expand_criterion(criterion: Criterion, policy: Policy, drug: str | None) -> Criterion | None:
    if not _applies_to(criterion, drug):
        return None
    update: dict[str, Any] = {}
    if criterion.include == "initial":
        update = {"include": None, "children": list(policy.initial.criteria)}
    source = update.get("children", criterion.children)
    if source:
        children = [c for c in (_expand(child, policy, drug) for child in source) if c is not None]
        update["children"] = children
    if criterion.documentation is not None:
        document = criterion.documentation
        name = document_question(criterion)
        text = (
            f"{document.document} (attach it: required for approval)"
            if document.required
            else f"{document.document} (attach if available)"
        )
        update["questions"] = [
            *criterion.questions,
            Question(name=name, type="attachment", text=text, required=False),
        ]
        update["documentation"] = None
        if document.required:
            # met only with the document attached; without it unknown (pends
            # for it). A criterion with children and no condition of its own
            # gets the guard as its own condition, and'ed with its children
            # (the policy model refuses the document on `combine: or`, where it
            # would guard one path only)
            guard = document_guard(criterion)
            update["met"] = guard if criterion.met is None else f"({criterion.met}) and ({guard})"
    return criterion.model_copy(update=update) if update else criterion


def document_guard(criterion: Criterion) -> str:
    """FHIRPath: true with the criterion's document attached, unknown without it."""
    return f"%{document_question(criterion)}.exists() or {{}}"


def index_policy(policy: Policy, kind: RequestKind, drug: str | None = None) -> PolicyIndex:
    index = PolicyIndex(policy, drug)
    tree = request_tree(policy, kind, drug)
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
    readers = _readers(policy, criteria, investigational)
    for criterion in criteria:
        for question in criterion.questions:
            # a question only read by conditions, or record-only, carries its own section
            sections = tuple(readers.get(question.name, ())) or (criterion.id,)
            index.questions[question.name] = QuestionInfo(
                question=question,
                link_id=question_link_id(criterion.id, question.name),
                section=criterion.id,
                options=(*question.options, *extra_options.get(question.name, [])),
                sections=sections,
            )
    return index


def reads(policy: Policy, expression: str | None) -> set[str]:
    """The questions an expression reads, through the derived values it reads."""
    derived = {value.name: value for value in policy.derived}
    names: set[str] = set()
    pending = list(expression_variables(expression or ""))
    while pending:
        name = pending.pop()
        if name in names:
            continue
        names.add(name)
        if name in derived:
            pending.extend(expression_variables(derived[name].expression))
    return names - set(derived)


def _readers(
    policy: Policy, criteria: list[Criterion], investigational: Investigational | None
) -> dict[str, list[str]]:
    """Question name → the sections whose definitions read its answer."""
    readers: dict[str, list[str]] = {}
    for criterion in criteria:
        for name in sorted(reads(policy, criterion.met)):
            readers.setdefault(name, []).append(criterion.id)
    if investigational is not None:
        for condition in investigational.all_conditions():
            names = reads(policy, condition.applies)
            if condition.answer_of:
                names.add(condition.answer_of)
            for name in sorted(names):
                readers.setdefault(name, []).append(condition.id)
    return readers


def build(
    policy: Policy, kind: RequestKind, drug: str | None = None, compiled: Any = None
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
        "item": _items(request_tree(policy, kind, drug), index, []),
    }
    if compiled is not None:
        _prepopulate(questionnaire, policy, index, compiled)
    return questionnaire


def _prepopulate(
    questionnaire: dict[str, Any], policy: Policy, index: PolicyIndex, compiled: Any
) -> None:
    """Launch contexts, the Library and each prefilled item's initialExpression."""
    from builder.checks import iter_items  # a sibling module that imports this one
    from builder.prepopulation import initial_expression, questionnaire_extensions, sources

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
            initial_expression(compiled, names[item["linkId"]]),
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
