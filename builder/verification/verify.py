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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.questionnaire import BuildError
from builder.verification.explore import Explorer, explore_forms
from cql_like.gateway import ExpressionSyntaxError, parse_expression
from policies.generated import (
    GENERATED_QUESTIONS,
    REQUESTED_DAILY_DOSE,
    REQUESTED_PRODUCT,
    REQUESTED_QUANTITY,
)
from policies.model import REQUEST_KINDS, Policy, Question, walk
from policies.tree import document_guard
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
        for child in children:
            self.infer(child)
        return ANY if len(children) != 1 else self.infer(children[0])

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
                    f"{child.get('text', '')!r} is a {typ.name}, not a truth value, in"
                    f" `{' '.join(node.get('terminalNodeText', []))}`"
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
        self.problems.append(f"{node.get('text', '')!r} compares a {left.name} with a {right.name}")

    def _AdditiveExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        left, right = (self.infer(c) for c in children)
        if left.name == "Date" and right.name == "Quantity":
            return Typ("Date")
        if left.name in NUMBER and right.name in NUMBER:
            return Typ("Decimal" if "Decimal" in (left.name, right.name) else "Integer")
        if left.name == right.name == "String":
            return Typ("String")
        if "Any" not in (left.name, right.name):
            self.problems.append(f"{node.get('text', '')!r} adds a {right.name} to a {left.name}")
        return ANY

    def _MultiplicativeExpression(self, node: dict[str, Any], children: list[Any]) -> Typ:
        left, right = (self.infer(c) for c in children)
        if left.name in NUMBER and right.name in NUMBER:
            return Typ("Decimal")
        if "Any" not in (left.name, right.name):
            self.problems.append(f"{node.get('text', '')!r} multiplies a {left.name}")
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
        where = f"{criterion.id}: met"
        result = explorer.met_table(criterion)
        values = {value for _assignment, value in result.rows}
        if criterion.kind != "information" and True not in values:
            problems.append(f"{where}: can never be met over the answers it reads")
        if criterion.kind != "information" and False not in values:
            problems.append(
                f"{where}: can never be not met over the answers it reads ({result.described()})"
            )
        if criterion.kind == "information" and False in values:
            problems.append(f"{where}: an information criterion must never be not met")
        if result.unanswered is not None:
            problems.append(
                f"{where}: is {str(result.unanswered).lower()} when its questions are unanswered,"
                " where missing information must leave it unknown"
            )
        for row, value, completion, other in result.unstable:
            problems.append(
                f"{where}: decides {str(value).lower()} with {row}, but answering"
                f" {completion} makes it {str(other).lower()}: missing information must leave"
                " it unknown"
            )
    return problems
