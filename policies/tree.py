"""What a policy means for one request: the tree of criteria a form asks
(``request_tree``), with the questions and criteria generated from the
quantity limits, the authorization term and the renewal cap, each written as
FHIRPath over the answers. Pure data in, data out: the emitter and the
scorer both read this tree."""

from __future__ import annotations

from typing import Any, Literal

from policies.expressions import join_terms
from policies.generated import (
    CAP_SECTION,
    PLANNED_MONTHS,
    PRIOR_RENEWALS,
    REQUESTED_DAILY_DOSE,
    REQUESTED_PRODUCT,
    REQUESTED_QUANTITY,
    TERM_SECTION,
    THERAPY_START,
)
from policies.model import (
    AnyOf,
    Condition,
    Criterion,
    Node,
    Option,
    Policy,
    QuantityLimit,
    Question,
    RequestKind,
    document_question,
)


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
    parts.extend(indication_expression(c) for c in limit.when)
    return " and ".join(f"({p})" for p in parts) if parts else None


def indication_expression(condition: Condition) -> str:
    """A limit's condition, unknown while its question is unanswered: which
    limit applies is not known yet, so a quantity over it is unknown too (the
    request pends), where a condition false until answered (as enableWhen is)
    would drop the limit and let the quantity through."""
    return f"({condition_expression(condition)}) or (%{condition.question}.empty() and {{}})"


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


def cap_criterion(policy: Policy, kind: RequestKind, drug: str | None = None) -> Criterion | None:
    """The section ``Cap``: the caps on renewals and on the total time on
    therapy of the whole policy, and those of a branch, which hold only for
    the requests taking it (unknown while the answers choosing it are)."""
    term = policy.authorization.term(kind)
    tests, texts = _cap_tests(term.max_renewals, term.max_total_months)
    renewals, months = term.max_renewals is not None, term.max_total_months is not None
    for cap in term.branch_caps:
        taken = branch_taken(policy, kind, drug, cap.section)
        if taken is None:
            continue  # a branch of another drug's forms
        own, words = _cap_tests(cap.max_renewals, cap.max_total_months)
        tests.append(f"({taken}) implies ({' and '.join(f'({t})' for t in own)})")
        texts.append(f"for {cap.section}, {' and '.join(words)}")
        renewals = renewals or cap.max_renewals is not None
        months = months or cap.max_total_months is not None
    questions = []
    if renewals:
        questions.append(
            Question(
                name=PRIOR_RENEWALS,
                type="integer",
                text="How many renewals of this authorization has this plan approved?",
                min_value=0,
            )
        )
    if months:
        questions.append(
            Question(name=THERAPY_START, type="date", text="Date the member started this therapy")
        )
    if not questions:
        return None
    return Criterion(
        id=CAP_SECTION,
        text=f"Limit on continued therapy: {'; '.join(texts)}",
        questions=questions,
        met=" and ".join(f"({t})" for t in tests),
    )


def _cap_tests(
    max_renewals: int | None, max_total_months: int | None
) -> tuple[list[str], list[str]]:
    """FHIRPath tests of a cap, and the cap in words."""
    tests, texts = [], []
    if max_renewals is not None:
        tests.append(f"%{PRIOR_RENEWALS} < {max_renewals}")
        texts.append(f"at most {max_renewals} renewals")
    if max_total_months is not None:
        tests.append(f"%{THERAPY_START} + {max_total_months} months > %as_of")
        texts.append(f"at most {max_total_months} months of therapy in all")
    return tests, [" and ".join(texts)] if texts else []


def branch_taken(policy: Policy, kind: RequestKind, drug: str | None, section: str) -> str | None:
    """FHIRPath: true when a request of this form takes the branch
    ``section`` (its group and every group above it enabled), unknown while
    an answer deciding that is missing; None when the form does not ask the
    section."""

    def group(conditions: list[Condition], behavior: str) -> list[str]:
        if not conditions:
            return []
        joined = f" {'or' if behavior == 'any' else 'and'} ".join(
            f"({indication_expression(c)})" for c in conditions
        )
        return [joined]

    def visit(nodes: list[Node], above: list[str], inherited: list[Condition]) -> str | None:
        for node in nodes:
            if isinstance(node, AnyOf):
                found = visit(list(node.any_of), [*above, *group(inherited, "all")], [])
            elif not _applies_to(node, drug):
                continue
            else:
                behavior = node.enable_behavior if node.enable_when else "all"
                path = [*above, *group([*inherited, *node.enable_when], behavior)]
                if node.enable_when_expression:
                    path.append(node.enable_when_expression)
                if node.id == section:
                    return " and ".join(f"({p})" for p in path) if path else "true"
                source = policy.initial.criteria if node.include else node.children
                found = visit(source, path, list(node.children_enable_when))
            if found is not None:
                return found
        return None

    return visit(policy.request(kind).criteria, [], [])


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
    caps = cap_criterion(policy, kind, drug)
    nodes.extend(c for c in (caps, term_criterion(policy, kind)) if c)
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
