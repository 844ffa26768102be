"""Build-time verification of a policy: a policy file that could decide wrongly is refused.

``verify_policy(policy, source)`` returns every problem found, each naming the
file, the section and the field. It checks, before anything is generated:

1. **Expressions** (a criterion's ``met``, an investigational ``applies``, a
   derived value): they parse completely (fhirpathpy's own parser, with an
   error listener that does not recover silently), read only answers,
   derived values and ``%as_of`` (a bare name such as ``fals`` is a path into
   the response and always empty; ``today()`` would tie a decision to the
   clock), and compare an answer only with a value of its own type (a
   boolean with a boolean, a choice's code with one of its options, a date
   with a date or a duration).
2. **The build**: every condition reaches the Questionnaire (``enableWhen``)
   and the scoring (not applicable) — the builder refuses a condition on a
   question the Questionnaire does not ask.
3. **Each criterion's ``met``**, evaluated over the answer domains of the
   questions it reads (see :mod:`builder.verification.explore`): it can be met, can be not
   met (an ``information`` criterion excepted), is unknown when those
   questions are unanswered, and a definite value never changes when an
   unanswered question it reads is answered (missing information never
   decides).
4. **The whole request**: exploring the form as a provider fills it, no
   approval is reachable while an enabled, unanswered question could still
   change the outcome, and no request pends with nothing left to ask.
5. **Routing** (:mod:`builder.verification.routing`), on the end states of
   that exploration: every question asked can change the determination
   (unless record-only), and every approval path approves on its own. What
   a bound left unexplored is a warning (``exploration_warnings``), never a
   pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.questionnaire import BuildError
from builder.verification.explore import NOTHING_ANSWERED, Explorer, explore_forms
from builder.verification.routing import routing
from cql_like.gateway import ExpressionSyntaxError, parse_expression
from policies.generated import (
    CAP_SECTION,
    GENERATED_QUESTIONS,
    REQUESTED_DAILY_DOSE,
    REQUESTED_PRODUCT,
    REQUESTED_QUANTITY,
    TERM_SECTION,
)
from policies.model import (
    REQUEST_KINDS,
    Condition,
    Criterion,
    Policy,
    QuantityLimit,
    Question,
    RequestKind,
    always_why,
    asked_always,
    walk,
)
from policies.names import questionnaire_id
from policies.tree import applicable_limits, document_guard, product_limits
from questionnaires.checks import QuestionnaireError

FORBIDDEN_FUNCTIONS = {"today", "now", "timeOfDay"}
MAX_NESTING = 120  # parse-tree levels; a chain of n and/or terms is about n + 4
NUMBER = {"Integer", "Decimal"}


@dataclass(frozen=True)
class Typ:
    name: str  # Boolean, String, Integer, Decimal, Date, Quantity, Coding, Code, Attachment, Any
    options: frozenset[str] | None = None  # for Code: the codes a choice answer can carry
    question: str | None = None
    literal: tuple[Any, ...] = ()  # string literal values, for a code comparison


ANY = Typ("Any")
_QUESTION_TYPES = {
    "boolean": "Boolean",
    "choice": "Coding",
    "integer": "Integer",
    "decimal": "Decimal",
    "date": "Date",
    "string": "String",
    "text": "String",
    "attachment": "Attachment",
}


def verify_policy(policy: Policy, source: str) -> list[str]:
    """Every problem of a policy file, each as ``FILE: SECTION: FIELD: what``."""
    problems = [f"{source}: {p}" for p in expression_problems(policy)]
    problems += [f"{source}: {p}" for p in dose_problems(policy)]
    problems += [f"{source}: {p}" for p in unit_problems(policy)]
    problems += [f"{source}: {p}" for p in indication_problems(policy)]
    if problems:
        return problems  # the rest would only repeat them
    try:
        forms = explore_forms(policy)
    except (BuildError, QuestionnaireError, ValueError) as exc:
        return [f"{source}: {exc}"]
    # a criterion shared by several forms is reported once, naming the forms
    # where it was found (with the answers each form asks, one form's criterion
    # may fail where another's does not)
    found: dict[str, list[str]] = {}
    for explorer in forms:
        for problem in criterion_problems(explorer):
            found.setdefault(problem, []).append(explorer.package.questionnaire["id"])
    problems += [f"{source}: {', '.join(ids)}: {p}" for p, ids in found.items()]
    if problems:
        return problems
    for explorer in forms:
        problems += [f"{source}: {p}" for p in explorer.run().problems]
    if problems:
        return problems
    for explorer in forms:
        problems += [f"{source}: {p}" for p in routing(explorer).problems]
    return problems


def dose_problems(policy: Policy) -> list[str]:
    """A daily-dose limit must say what a dose above it gets: a dose cannot be
    modified to the limit, and left unsaid (as policies released before
    ``over_dose`` still build) a dose above it would be approved with a
    quantity within the limit."""
    limits = policy.quantity_limits
    if limits is None or limits.over_dose is not None:
        return []
    if not any(limit.daily_dose is not None for limit in limits.limits):
        return []
    return [
        "QL: over_dose: a daily-dose limit must say what a prescribed dose above it gets"
        " (`over_dose: deny`, or `review` with `over_limit: modify`)"
    ]


def unit_problems(policy: Policy) -> list[str]:
    """The limits of one form in one unit: the form asks the quantity as one
    number of units and the prescribed daily dose in one dose unit, and
    compares the answer with each limit's number as written, so a limit of
    2000 mcg a day in a form that asks milligrams would admit a thousand times
    the dose. Mixed units are refused, naming both limits, rather than
    converted: the author writes the limits of a form in the unit it asks.

    The quantity's unit may differ between limits the request tells apart by
    its product (each with its own product ``code``); a daily dose is asked
    once per form whatever the product, so its unit is one per form."""
    if policy.quantity_limits is None:
        return []
    every = policy.quantity_limits.limits
    clashes: dict[tuple[int, int, str], list[str]] = {}
    for drug in dict.fromkeys(drug for _kind, drug in policy.forms()):
        limits = applicable_limits(policy, drug)
        forms = [questionnaire_id(policy, kind, drug) for kind in REQUEST_KINDS]
        dosed = [limit for limit in limits if limit.daily_dose is not None]
        for field, first, other in [
            *(("daily_dose: unit", dosed[0], d) for d in dosed[1:]),
            *(("unit", limits[0], limit) for limit in limits[1:]),
        ]:
            if field == "unit" and _told_apart(first, other, limits):
                continue
            if _unit(first, field) != _unit(other, field):
                key = (_index(every, first), _index(every, other), field)
                clashes.setdefault(key, []).extend(forms)
    problems = []
    for (i, j, field), forms in clashes.items():
        first, other = every[i], every[j]
        asked = (
            f"the prescribed daily dose in one unit ({_unit(first, field)}/d)"
            if field != "unit"
            else "the quantity as one number of units, with no product to tell the limits apart"
        )
        several = len(forms) > 1
        problems.append(
            f"QL: {_limit_label(j, other)}: {field}: {_unit(other, field)}, where"
            f" {_limit_label(i, first)} has {_unit(first, field)}: the form{'s' * several}"
            f" ({', '.join(forms)}) ask{'s' * (not several)} {asked} and compare"
            f"{'s' * (not several)} the answer with each limit as written; write both limits"
            " in one unit" + ("" if field != "unit" else ", or give each product its `code`")
        )
    return problems


def indication_problems(policy: Policy) -> list[str]:
    """A limit chosen by an answer (``when``) needs that answer on every
    request of each form it is in: a limit applies only once its condition
    is known, so a question its form asks only on some answers (a renewal
    that asks the indication only when the plan holds no earlier approval)
    would leave a quantity over that limit pending with nothing to ask — or,
    read as not applying, approve it over the limit."""
    if policy.quantity_limits is None:
        return []
    every = policy.quantity_limits.limits
    found: dict[tuple[int, str, str], list[str]] = {}
    for kind, drug in policy.forms():
        always = asked_always(policy, kind, drug)
        for limit in applicable_limits(policy, drug):
            for condition in limit.when:
                if condition.question in always:
                    continue
                why = always_why(policy, kind, drug, condition.question)
                if why is None:
                    continue  # not asked at all: refused with the policy's references
                key = (_index(every, limit), condition.question, why)
                found.setdefault(key, []).append(questionnaire_id(policy, kind, drug))
    return [
        f"QL: {_limit_label(i, every[i])}: when: {question} is asked in {', '.join(forms)}"
        f" only on some answers ({why}), so on the others which limit applies is never"
        " known: ask it on every request of the form, or choose the limit by `code` or"
        " `drug`"
        for (i, question, why), forms in found.items()
    ]


def _limit_label(index: int, limit: QuantityLimit) -> str:
    """A limit as its author wrote it: its place in the list, its product and
    what chooses it."""
    chosen = [f"code {limit.code.code}"] if limit.code is not None else []
    chosen += [f"drug {limit.drug}"] if limit.drug is not None else []
    chosen += [f"when {_condition_text(c)}" for c in limit.when]
    return f"limits[{index}] ({'; '.join([limit.product, *chosen])})"


def _condition_text(condition: Condition) -> str:
    if condition.operator == "exists":
        return f"{condition.question} {'exists' if condition.answer else 'is unanswered'}"
    answer = (
        str(condition.answer).lower() if isinstance(condition.answer, bool) else condition.answer
    )
    return f"{condition.question} {condition.operator} {answer}"


def _unit(limit: QuantityLimit, field: str) -> str:
    if field == "unit":
        return limit.unit
    assert limit.daily_dose is not None
    return limit.daily_dose.unit


def _told_apart(one: QuantityLimit, other: QuantityLimit, limits: list[QuantityLimit]) -> bool:
    """The request names which of the two products it is for."""
    return (
        len(product_limits(limits)) > 1
        and one.code is not None
        and other.code is not None
        and one.code.code != other.code.code
    )


def _index(limits: list[QuantityLimit], limit: QuantityLimit) -> int:
    return next(i for i, candidate in enumerate(limits) if candidate is limit)


# --- 1. expressions ----------------------------------------------------------


def expression_problems(policy: Policy) -> list[str]:
    questions: dict[str, Question] = {}
    for kind in REQUEST_KINDS:
        for criterion in walk(policy.request(kind).criteria):
            for question in criterion.questions:
                questions[question.name] = question
    options: dict[str, set[str]] = {n: {o.key for o in q.options} for n, q in questions.items()}
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            if condition.answer_of:
                options.setdefault(condition.answer_of, set()).add(condition.id)
    types: dict[str, Typ] = {
        name: Typ(
            _QUESTION_TYPES[q.type],
            frozenset(options.get(name, ())) if q.type == "choice" else None,
            name,
        )
        for name, q in questions.items()
    }
    types["as_of"] = Typ("Date")
    types[REQUESTED_QUANTITY] = Typ("Integer")
    types[REQUESTED_DAILY_DOSE] = Typ("Decimal")
    types[REQUESTED_PRODUCT] = Typ("Coding", None, REQUESTED_PRODUCT)
    for name in GENERATED_QUESTIONS - set(types):
        types[name] = Typ("Integer") if name != "therapy_start" else Typ("Date")
    for value in policy.derived:
        types[value.name] = Typ(
            {"boolean": "Boolean", "integer": "Integer", "decimal": "Decimal"}.get(
                value.type, value.type.capitalize()
            )
        )
    problems: list[str] = []
    expressions: list[tuple[str, str, str]] = []  # (where, source, wanted type)
    for value in policy.derived:
        expressions.append(
            (f"derived: {value.name}: expression", value.expression, types[value.name].name)
        )
    for kind in REQUEST_KINDS:
        for criterion in walk(policy.request(kind).criteria):
            if criterion.met is not None:
                expressions.append((f"{criterion.id}: met", criterion.met, "Boolean"))
            if criterion.enable_when_expression is not None:
                where = f"{criterion.id}: enable_when_expression"
                expressions.append((where, criterion.enable_when_expression, "Boolean"))
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            if condition.applies:
                expressions.append((f"{condition.id}: applies", condition.applies, "Boolean"))
    for where, source, wanted in expressions:
        problems += [f"{where}: {p}" for p in check_expression(source, types, wanted)]
    return problems


def check_expression(source: str, types: dict[str, Typ], wanted: str = "Boolean") -> list[str]:
    """What is wrong with one expression (empty when nothing is)."""
    try:
        tree = parse_expression(source)
    except ExpressionSyntaxError as exc:
        return [f"{source!r} does not parse: {exc}"]
    depth = _depth(tree)
    if depth > MAX_NESTING:
        # fhirpathpy evaluates recursively, one level per node: a chain of a
        # few hundred and/or terms exhausts Python's stack at scoring time
        return [
            f"nests {depth} levels deep (at most {MAX_NESTING}): split the chain into child"
            " criteria combined by `logic: all` or `logic: any`"
        ]
    checker = _Checker(types)
    result = checker.infer(tree)
    problems = checker.problems
    numeric = wanted in NUMBER and result.name in NUMBER
    if not problems and result.name not in ("Any", wanted) and not numeric:
        problems.append(f"{source!r} gives a {result.name}, not a {wanted}")
    return problems


def _written(node: dict[str, Any]) -> str:
    """A part of an expression as its author wrote it (kept by the parser)."""
    return str(node.get("source") or node.get("text") or "")


def _depth(tree: dict[str, Any]) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.get("children", []))
    return deepest


class _Checker:
    """A static look at a parsed FHIRPath expression: the type of each part,
    so that comparisons of unlike types are named before anything runs."""

    def __init__(self, types: dict[str, Typ]) -> None:
        self.types = types
        self.problems: list[str] = []

    def infer(self, node: dict[str, Any]) -> Typ:
        kind = node.get("type")
        children = node.get("children", [])
        method = getattr(self, f"_{kind}", None)
        if method is not None:
            return method(node, children)  # type: ignore[no-any-return]
        # each child inferred once: a second look would report its problems twice
        inferred = [self.infer(child) for child in children]
        return inferred[0] if len(inferred) == 1 else ANY

    # terms
    def _LiteralTerm(self, node: dict[str, Any], children: list[Any]) -> Typ:
        literal = children[0]
        text = literal.get("text", "")
        kind = literal["type"]
        if kind == "StringLiteral":
            return Typ("String", literal=(text[1:-1],))
        if kind == "BooleanLiteral":
            return Typ("Boolean")
        if kind == "NumberLiteral":
            return Typ("Decimal" if "." in text else "Integer")
        if kind in ("DateLiteral", "DateTimeLiteral"):
            return Typ("Date")
        if kind == "QuantityLiteral":
            return Typ("Quantity")
        return ANY

    def _ExternalConstantTerm(self, node: dict[str, Any], children: list[Any]) -> Typ:
        constant = children[0]
        name = constant.get("children", [{}])[0].get("text", "").strip("`")
        if name in ("resource", "context"):
            return ANY
        typ = self.types.get(name)
        if typ is None:
            self.problems.append(f"%{name} is neither an answer nor a derived value")
            return ANY
        return typ

    def _InvocationTerm(self, node: dict[str, Any], children: list[Any]) -> Typ:
        invocation = children[0]
        if invocation["type"] == "MemberInvocation":
            name = invocation.get("text") or invocation["children"][0].get("text")
            self.problems.append(
                f"`{name}` is a bare name: a path into the response that is always empty"
                " (an answer is read as %name; a string is quoted)"
            )
            return ANY
        if invocation["type"] == "FunctionInvocation":
            return self._function(None, invocation)
        return ANY

    def _ParenthesizedTerm(self, node: dict[str, Any], children: list[Any]) -> Typ:
        return self.infer(children[0])

    def _TermExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        return self.infer(children[0])

    def _InvocationExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        target = self.infer(children[0])
        invocation = children[1]
        if invocation["type"] == "MemberInvocation":
            member = invocation["children"][0].get("text", "")
            if target.name == "Coding" and member == "code":
                return Typ("Code", target.options, target.question)
            if target.name == "Coding" and member in ("system", "display"):
                return Typ("String")
            return ANY
        if invocation["type"] == "FunctionInvocation":
            return self._function(target, invocation)
        return ANY

    def _function(self, target: Typ | None, invocation: dict[str, Any]) -> Typ:
        function = invocation["children"][0]
        name = function["children"][0].get("text", "")
        for child in function.get("children", [])[1:]:
            self.infer(child)
        if name in FORBIDDEN_FUNCTIONS:
            self.problems.append(f"{name}() ties the decision to the clock: use %as_of")
            return Typ("Date")
        if name in ("exists", "empty", "not", "all", "allTrue", "anyTrue", "hasValue"):
            return Typ("Boolean")
        if name in ("count", "length"):
            return Typ("Integer")
        if name in ("first", "last", "single", "distinct", "where") and target is not None:
            return target
        return ANY

    def _ParamList(self, node: dict[str, Any], children: list[Any]) -> Typ:
        for child in children:
            self.infer(child)
        return ANY

    # operators
    def _logical(self, node: dict[str, Any], children: list[Any]) -> Typ:
        for child in children:
            typ = self.infer(child)
            if typ.name not in ("Boolean", "Any"):
                self.problems.append(
                    f"{_written(child)!r} is a {typ.name}, not a truth value, in {_written(node)!r}"
                )
        return Typ("Boolean")

    _AndExpression = _OrExpression = _ImpliesExpression = _logical

    def _UnionExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        parts = [self.infer(c) for c in children]
        names = {p.name for p in parts}
        if len(names) == 1:
            return Typ(parts[0].name, literal=tuple(v for p in parts for v in p.literal))
        return ANY

    def _compare(self, node: dict[str, Any], children: list[Any]) -> Typ:
        left, right = (self.infer(c) for c in children)
        operator = " ".join(node.get("terminalNodeText", []))
        self._comparable(left, right, operator, node)
        return Typ("Boolean")

    _EqualityExpression = _InequalityExpression = _MembershipExpression = _compare

    def _comparable(self, left: Typ, right: Typ, operator: str, node: dict[str, Any]) -> None:
        if "Any" in (left.name, right.name):
            return
        for code, other in ((left, right), (right, left)):
            if code.name == "Code":
                if other.name != "String":
                    self.problems.append(
                        f"the code of {code.question} is compared with a {other.name}"
                    )
                    return
                unknown = [v for v in other.literal if code.options and v not in code.options]
                if unknown:
                    self.problems.append(
                        f"{', '.join(repr(u) for u in unknown)} is not an option of"
                        f" {code.question} ({', '.join(sorted(code.options or ()))})"
                    )
                return
        if left.name == "Coding" or right.name == "Coding":
            coding = left if left.name == "Coding" else right
            self.problems.append(
                f"%{coding.question} is a choice: compare its code (%{coding.question}.code)"
            )
            return
        if {left.name, right.name} <= NUMBER or left.name == right.name:
            if left.name == "Boolean" and operator not in ("=", "!=", "~", "!~", "in"):
                self.problems.append(f"truth values compare only with = or !=, not {operator}")
            return
        self.problems.append(f"{_written(node)!r} compares a {left.name} with a {right.name}")

    def _AdditiveExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        left, right = (self.infer(c) for c in children)
        if left.name == "Date" and right.name == "Quantity":
            return Typ("Date")
        if left.name in NUMBER and right.name in NUMBER:
            return Typ("Decimal" if "Decimal" in (left.name, right.name) else "Integer")
        if left.name == right.name == "String":
            return Typ("String")
        if "Any" not in (left.name, right.name):
            self.problems.append(f"{_written(node)!r} adds a {right.name} to a {left.name}")
        return ANY

    def _MultiplicativeExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        left, right = (self.infer(c) for c in children)
        if left.name in NUMBER and right.name in NUMBER:
            return Typ("Decimal")
        if "Any" not in (left.name, right.name):
            self.problems.append(f"{_written(node)!r} multiplies a {left.name} by a {right.name}")
        return ANY


# --- 3. each criterion over its answer domain ----------------------------------


def criterion_problems(explorer: Explorer) -> list[str]:
    problems = []
    for criterion in explorer.criteria():
        if criterion.met is None or criterion.met == document_guard(criterion):
            # a document required by a criterion with children is its only own
            # condition: met when attached, unknown until then; never not met,
            # as the children decide that
            continue
        result = explorer.met_table(criterion)
        said = _Said.of(explorer.policy, explorer.kind, criterion, result)
        values = {value for _assignment, value in result.rows}
        if criterion.kind != "information" and True not in values:
            problems.append(f"{said.where}: {said.never(True)}")
        if criterion.kind != "information" and False not in values:
            problems.append(f"{said.where}: {said.never(False)} ({result.described()})")
        if criterion.kind == "information" and False in values:
            problems.append(f"{said.where}: an information criterion must never be not met")
        unstable = result.unstable
        if result.unanswered is not None:
            # the same fault seen twice (decided with nothing answered, and
            # overturned by an answer) is one problem: one message, with the
            # answer that overturns it
            overturned = next((u for u in unstable if u[0] == NOTHING_ANSWERED), None)
            unstable = [u for u in unstable if u is not overturned]
            problems.append(
                f"{said.where}: {said.unanswered(result.unanswered)}"
                + (
                    f", but answering {overturned[2]} makes {said.it} {said.word(overturned[3])}"
                    if overturned
                    else ""
                )
                + ": missing information must leave it unknown"
            )
        for row, value, completion, other in unstable:
            problems.append(
                f"{said.where}: {said.decides(value)} with {row}, but answering {completion}"
                f" makes {said.it} {said.word(other)}: missing information must leave it unknown"
            )
    return problems


@dataclass(frozen=True)
class _Said:
    """How a problem of a criterion's ``met`` is put to the author: the
    criterion's own ``met`` by its section and field; a section the builder
    generates (the quantity limits, the term, the cap) by the data it is
    generated from, never by an expression the author did not write."""

    where: str
    it: str = "it"
    words: tuple[str, str, str] = ("true", "false", "unknown")  # met, not met, unknown
    why: str = ""  # why missing answers decide, where the data says

    @classmethod
    def of(cls, policy: Policy, kind: RequestKind, criterion: Criterion, result: Any) -> _Said:
        if criterion.id == "QL" and policy.quantity_limits is not None:
            return cls._limits(policy, result.names)
        if criterion.id in (TERM_SECTION, CAP_SECTION):
            term = policy.authorization.term(kind)
            fields = (
                ["lesser_of_planned"]
                if criterion.id == TERM_SECTION
                else [
                    f"{name}: {value}"
                    for name, value in (
                        ("max_renewals", term.max_renewals),
                        ("max_total_months", term.max_total_months),
                    )
                    if value is not None
                ]
                + [
                    f"branch_caps: {cap.section}: {name}: {value}"
                    for cap in term.branch_caps
                    for name, value in (
                        ("max_renewals", cap.max_renewals),
                        ("max_total_months", cap.max_total_months),
                    )
                    if value is not None
                ]
            )
            return cls(
                f"{criterion.id} (generated from authorization: {kind}: {', '.join(fields)})",
                "the section",
                ("met", "not met", "unknown"),
            )
        return cls(f"{criterion.id}: met")

    @classmethod
    def _limits(cls, policy: Policy, names: list[str]) -> _Said:
        assert policy.quantity_limits is not None
        every = policy.quantity_limits.limits
        chosen = [(i, limit) for i, limit in enumerate(every) if limit.when]
        labels = [_limit_label(i, limit) for i, limit in chosen]
        asked = sorted({c.question for _i, limit in chosen for c in limit.when} & set(names))
        why = (
            f" (its `when` reads {' and '.join(asked)}: while that is unanswered, whether"
            f" the limit applies is unknown, and so is a quantity above it)"
            if asked
            else ""
        )
        return cls(
            f"QL: {', '.join(labels)}: when" if labels else "QL: limits",
            "the request",
            ("within the limits", "over a limit", "unknown"),
            why,
        )

    def word(self, value: bool | None) -> str:
        return self.words[2] if value is None else self.words[0 if value else 1]

    def never(self, value: bool) -> str:
        if self.it == "it":
            return f"can never be {'met' if value else 'not met'} over the answers it reads"
        return f"{self.it} can never be {self.word(value)}, whatever its questions' answers"

    def unanswered(self, value: bool) -> str:
        if self.it == "it":
            return f"is {self.word(value)} when its questions are unanswered"
        return f"{self.it} is {self.word(value)} with its questions unanswered{self.why}"

    def decides(self, value: bool) -> str:
        if self.it == "it":
            return f"decides {self.word(value)}"
        return f"{self.it} is {self.word(value)}"
