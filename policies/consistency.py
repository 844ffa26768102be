"""The rules across a policy's fields that a schema cannot state: unique ids
and names, every reference (``%name``, enable_when, answer_of, drugs,
branches) resolving to something of a fitting type, every question read by
something. The data model (:mod:`policies.model`) checks each part's shape;
the loader applies these to the whole, so every policy read from a file has
passed both. Each message starts with the section (or part of the file) it is
about.
"""

from __future__ import annotations

from datetime import date

from policies.generated import DOCUMENT_PREFIX, GENERATED_QUESTIONS, GENERATED_SECTIONS
from policies.model import (
    REQUEST_KINDS,
    BranchCap,
    BranchTerm,
    Condition,
    Criterion,
    Policy,
    Question,
    RequestKind,
    expression_variables,
    form_criteria,
    walk,
)
from policies.names import questionnaire_id


def check_policy(policy: Policy) -> None:
    """Cross-field rules a schema cannot state: unique ids and names, and every
    reference (``%name``, enable_when, answer_of, drugs, branches) resolving.
    Each message starts with the section (or part of the file) it is about."""
    questions: dict[str, Question] = {}
    sections: set[str] = set(GENERATED_SECTIONS)
    drug_ids = [d.id for d in policy.drugs if d.id is not None]
    if len(drug_ids) != len(set(drug_ids)):
        raise ValueError("drugs: drug ids must be unique")
    if policy.per_drug and len(drug_ids) != len(policy.drugs):
        raise ValueError("drugs: a policy of several drugs needs an `id` for each")

    def add_section(section: str) -> None:
        if section in sections:
            raise ValueError(f"{section}: section id is used twice (or is a generated one)")
        # the generated attachment question is named after the id in lower case
        # (``document_renewal_iv``), so ids differing only in case would share it
        twin = next((s for s in sections if s.lower() == section.lower()), None)
        if twin is not None:
            raise ValueError(f"{section}: section id differs from {twin} only in case")
        sections.add(section)

    def check_drugs(where: str, names: list[str]) -> None:
        unknown = sorted(set(names) - set(drug_ids))
        if unknown:
            raise ValueError(f"{where}: drugs names unknown drug id(s) {unknown}")

    trees = {kind: policy.request(kind).criteria for kind in REQUEST_KINDS}
    for kind, tree in trees.items():
        for criterion in walk(tree):
            if criterion.include == "initial" and kind != "renewal":
                raise ValueError(
                    f"{criterion.id}: include: only renewal criteria may include the initial ones"
                )
            add_section(criterion.id)
            check_drugs(criterion.id, criterion.drugs)
            for question in criterion.questions:
                where = f"{criterion.id}: questions: {question.name}"
                if question.name in questions:
                    raise ValueError(f"{where}: question name is used twice")
                if question.name in GENERATED_QUESTIONS or question.name.startswith(
                    DOCUMENT_PREFIX
                ):
                    raise ValueError(f"{where}: the name is reserved for a generated question")
                questions[question.name] = question
    if policy.investigational:
        add_section(policy.investigational.id)
        for condition in policy.investigational.conditions:
            add_section(condition.id)
    derived_names = set()
    for value in policy.derived:
        if value.name in questions or value.name in derived_names:
            raise ValueError(f"derived: {value.name}: the name is used twice")
        derived_names.add(value.name)

    extra_options: dict[str, set[str]] = {}
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            if condition.answer_of:
                extra_options.setdefault(condition.answer_of, set()).add(condition.id)

    def option_codes(question: Question) -> set[str]:
        return {o.key for o in question.options} | extra_options.get(question.name, set())

    def check_conditions(where: str, conditions: list[Condition]) -> None:
        for condition in conditions:
            target = questions.get(condition.question)
            if target is None:
                raise ValueError(
                    f"{where}: enable_when names unknown question {condition.question}"
                )
            if target.record_only:
                raise ValueError(
                    f"{where}: enable_when reads record-only question {condition.question}"
                )
            _check_condition_fits(where, condition, target, option_codes(target))

    readable = set(questions) | derived_names | GENERATED_QUESTIONS
    read: set[str] = set()

    def check_expression(where: str, expression: str | None) -> None:
        if expression is None:
            return
        names = expression_variables(expression)
        unknown = names - readable
        if unknown:
            raise ValueError(f"{where}: reads unknown question(s) {sorted(unknown)}")
        record_only = sorted(n for n in names if n in questions and questions[n].record_only)
        if record_only:
            raise ValueError(f"{where}: reads record-only question(s) {record_only}")
        read.update(names)

    for value in policy.derived:
        check_expression(f"derived: {value.name}: expression", value.expression)
    for tree in trees.values():
        for criterion in walk(tree):
            check_expression(f"{criterion.id}: met", criterion.met)
            check_conditions(f"{criterion.id}: enable_when", criterion.enable_when)
            check_conditions(
                f"{criterion.id}: children_enable_when", criterion.children_enable_when
            )
            for question in criterion.questions:
                conditions = question.enable_when
                check_conditions(f"{criterion.id}: questions: {question.name}", conditions)
                for source in question.ehr:
                    if source.answer is not None and source.answer not in option_codes(question):
                        raise ValueError(
                            f"{criterion.id}: questions: {question.name}: ehr: answer"
                            f" {source.answer!r} is not one of its options"
                        )
                read.update(c.question for c in conditions)
            read.update(c.question for c in criterion.enable_when)
            read.update(c.question for c in criterion.children_enable_when)
    for kind, tree in trees.items():
        for criterion in walk(tree):
            if criterion.enable_when_expression is not None:
                _check_enable_when_expression(policy, kind, criterion, questions)
                read.update(expression_variables(criterion.enable_when_expression))
    for tree in trees.values():
        for criterion in walk(tree):
            unknown_cited = sorted(set(criterion.cites) - sections)
            if unknown_cited:
                raise ValueError(f"{criterion.id}: cites: no such section {unknown_cited}")
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            check_expression(f"{condition.id}: applies", condition.applies)
            if condition.answer_of is not None:
                target = questions.get(condition.answer_of)
                if target is None or target.type != "choice":
                    raise ValueError(f"{condition.id}: answer_of must name a choice question")
                read.add(condition.answer_of)
    for tree in trees.values():
        for criterion in walk(tree):
            document = criterion.documentation
            if document is not None and document.required and criterion.combine == "or":
                # met by its own condition OR its children: a document could
                # guard one path only, and the other would approve without it
                raise ValueError(
                    f"{criterion.id}: documentation: a required document cannot guard a"
                    " criterion with `combine: or` (its children would meet it without the"
                    " document): put the documentation on the criteria that need it"
                )
    for kind in REQUEST_KINDS:
        term = policy.authorization.term(kind)
        for cap in term.branch_caps:
            where = f"authorization.{kind}.branch_caps: {cap.section}"
            if cap.section in sections and not _is_branch(policy, cap.section):
                # a cap holds for the requests taking the branch: the
                # answers that choose it (its enable_when) say which those are
                raise ValueError(
                    f"{where}: not a branch (an alternative of a `logic: any` criterion, asked"
                    " on the answer that chooses it by its `enable_when`), so which requests"
                    " the cap holds for is undefined: put the cap on the branch, or on the whole"
                    f" {kind} request"
                )
        named: list[tuple[str, BranchTerm | BranchCap]] = [
            *(("branches", b) for b in term.branches),
            *(("branch_caps", c) for c in term.branch_caps),
        ]
        for field, branch in named:
            if branch.section not in sections:
                raise ValueError(
                    f"authorization.{kind}.{field}: {branch.section} is no section of the policy"
                )
            # the length is read from the section's status in this request's
            # determination: a section the request does not decide never applies
            if not any(
                branch.section == c.id
                for form_kind, drug in policy.forms()
                if form_kind == kind
                for c in form_criteria(policy, kind, drug)
            ):
                raise ValueError(
                    f"authorization.{kind}.{field}: {branch.section} is not among the policy's"
                    f" {kind} criteria, so this {'length' if field == 'branches' else 'cap'}"
                    " would never apply"
                )
    if policy.quantity_limits is not None:
        for number, limit in enumerate(policy.quantity_limits.limits):
            where = f"QL: limits[{number}]"
            if limit.drug is not None:
                check_drugs(where, [limit.drug])
            check_conditions(f"{where}: when", limit.when)
            read.update(c.question for c in limit.when)
            # unanswerable in a form, the condition is false there and the
            # limit silently drops out of that form's requests
            for kind, drug in policy.forms():
                if drug is not None and limit.drug is not None and drug != limit.drug:
                    continue
                asked = {q.name for c in form_criteria(policy, kind, drug) for q in c.questions}
                for needed in limit.when:
                    if needed.question not in asked:
                        form = questionnaire_id(policy, kind, drug)
                        raise ValueError(
                            f"{where}: when: {needed.question} is not asked in the {kind}"
                            f" Questionnaire {form},"
                            " so the limit would never apply to it: ask it there too (a renewal"
                            " criterion with `include: initial` asks the initial questions), or"
                            " choose the limit by `code` or `drug`"
                        )
        drug_choices: list[str | None] = [*drug_ids] or [None]
        for drug in drug_choices:
            applicable = [
                lim for lim in policy.quantity_limits.limits if lim.drug is None or lim.drug == drug
            ]
            unguarded = [lim for lim in applicable if lim.code is None and not lim.when]
            if len(applicable) > 1 and unguarded:
                forms = ", ".join(
                    questionnaire_id(policy, kind, form_drug)
                    for kind, form_drug in policy.forms()
                    if form_drug == drug
                )
                raise ValueError(
                    "QL: limits: with several limits for one drug, each needs a product `code`"
                    f" or a `when` condition to be chosen by (in {forms})"
                )
    for name, question in questions.items():
        if name not in read and not question.record_only:
            raise ValueError(
                f"{_section_of(policy, name)}: questions: {name}: no criterion, condition or"
                " derived value reads it (mark it `record_only: true` if it only informs the"
                " reviewer)"
            )


# the question types whose answer a client's FHIRPath reads as the scorer
# does (``answer.value``): a number with a unit is a Quantity on the form
_EXPRESSION_TYPES = {"boolean", "integer", "decimal", "date"}


def _check_enable_when_expression(
    policy: Policy, kind: RequestKind, criterion: Criterion, questions: dict[str, Question]
) -> None:
    """What makes an ``enable_when_expression`` safe to build and verify: it
    stands at the top of a request's criteria (nothing above it adds an
    enableWhen, which SDC does not allow beside it); it reads only questions
    asked on every request, of a type a client reads as the scorer does, none
    of its own (a disabled group hides them), each decided by the ``met`` of a
    criterion that always applies (so an unanswered one pends the request
    instead of silently leaving this criterion out); and no evaluation date
    (a client evaluates it on its own day, the scorer on the request's)."""
    where = f"{criterion.id}: enable_when_expression"
    expression = criterion.enable_when_expression or ""
    top = policy.request(kind).criteria
    if not any(c is criterion for c in top):
        raise ValueError(
            f"{where}: only a criterion at the top of the {kind} criteria may have one"
            " (conditions from above would need enableWhen beside it)"
        )
    if kind == "initial" and any(
        c.include == "initial" and (c.children_enable_when or c.enable_when_expression)
        for c in walk(policy.renewal.criteria)
    ):
        raise ValueError(
            f"{where}: the renewal includes the initial criteria under a condition, which"
            " would need enableWhen beside it"
        )
    if "%as_of" in expression or "today()" in expression or "now()" in expression:
        raise ValueError(
            f"{where}: reads the evaluation date: a client evaluates it on its own day, the"
            " scorer on the request's, so they could disagree on what is asked"
        )
    names = expression_variables(expression)
    if not names:
        raise ValueError(f"{where}: reads no question")
    own = {q.name for c in walk([criterion]) for q in c.questions}
    always = [
        c
        for c in top
        if isinstance(c, Criterion)
        and c is not criterion
        and not c.enable_when
        and c.enable_when_expression is None
        and not c.drugs
        and c.kind != "information"
    ]
    for name in sorted(names):
        question = questions.get(name)
        if question is None:
            raise ValueError(f"{where}: reads {name}, which is no question (nor may be derived)")
        if name in own:
            raise ValueError(f"{where}: reads {name}, a question of its own group")
        odd = question.unit or question.record_only or question.above is not None
        if question.type not in _EXPRESSION_TYPES or odd:
            raise ValueError(
                f"{where}: reads {name}, a {question.type} question"
                + (" with a unit" if question.unit else "")
                + (" with an `above` bound" if question.above is not None else "")
                + (", record-only" if question.record_only else "")
                + ": only boolean, integer, decimal (no unit) and date answers are read alike"
                " by a client and the scorer"
            )
        if question.enable_when or not any(
            name in {q.name for q in c.questions} and name in expression_variables(c.met or "")
            for c in always
        ):
            raise ValueError(
                f"{where}: reads {name}, which no criterion asked on every request decides"
                " by its `met`: unanswered, it would leave this criterion out instead of"
                " pending the request"
            )


def _is_branch(policy: Policy, section: str) -> bool:
    """An alternative of a ``logic: any`` criterion, chosen by its enable_when."""
    return any(
        isinstance(child, Criterion) and child.id == section and bool(child.enable_when)
        for kind in REQUEST_KINDS
        for parent in walk(policy.request(kind).criteria)
        if parent.logic == "any"
        for child in parent.children
    )


def _section_of(policy: Policy, name: str) -> str:
    for kind in REQUEST_KINDS:
        for criterion in walk(policy.request(kind).criteria):
            if any(q.name == name for q in criterion.questions):
                return criterion.id
    return "?"


def _check_condition_fits(
    where: str, condition: Condition, target: Question, option_codes: set[str]
) -> None:
    answer = condition.answer
    if condition.operator == "exists":
        if not isinstance(answer, bool):
            raise ValueError(f"{where}: `exists` takes true or false")
        return
    expected: dict[str, tuple[type, ...]] = {
        "boolean": (bool,),
        "integer": (int,),
        "decimal": (int, float),
        "date": (date,),
        "string": (str,),
        "text": (str,),
        "choice": (str,),
    }
    allowed = expected.get(target.type)
    if allowed is None:
        raise ValueError(f"{where}: cannot compare the answer of a {target.type} question")
    if isinstance(answer, bool) and bool not in allowed:
        raise ValueError(f"{where}: {condition.question} is {target.type}, not boolean")
    if not isinstance(answer, allowed):
        raise ValueError(
            f"{where}: answer {answer!r} does not fit {target.type} question {target.name}"
        )
    if target.type in ("boolean", "choice") and condition.operator not in ("=", "!="):
        raise ValueError(f"{where}: {target.type} answers compare only with = or !=")
    if target.type == "choice" and answer not in option_codes:
        raise ValueError(f"{where}: {answer!r} is not an option of {target.name}")
