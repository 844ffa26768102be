"""Exploring a policy's answer space with the real scorer, at build time.

The verifier (:mod:`builder.verification.verify`) and the decision tables
(:mod:`builder.verification.decisions`) both need to know what a policy decides for the
answers a provider can give. Each question gets a small **answer domain**:
both truth values; every option of a choice; for numbers, the values just
below, at and above each constant the policy's expressions and conditions
compare it with (and its bounds); for dates, the evaluation date minus each
duration the expressions add to it (``18 years``), one day either side, and
each date constant; one attachment; and *unanswered*.

Two explorations use these domains:

- :meth:`Explorer.met_table` evaluates one criterion's ``met`` over the cross
  product of the domains of the questions it reads;
- :meth:`Explorer.run` fills the form as a provider would: it scores the
  empty response, then answers the first question the scorer says is
  missing with each value of its domain, and goes on until every path ends in
  a determination. The numbers or dates of one question form a class, explored
  once (the decision tables list the whole class), when every expression and
  condition reading that question decides them alike and reads no answer
  still to come; otherwise (a ratio whose other half is not yet given) each
  value is explored. Each truth value and option is a path of its own. At each approval it also answers,
  one at a time, every enabled question left unanswered: an approval that
  such an answer would overturn is a policy that could decide wrongly.

What it does not cover: values between the boundary points (a criterion
monotone between its constants is covered by its boundaries; one that is not
— a range with a hole — is not), and answers to two questions left
unanswered at an approval changed together. It is bounded by
``MAX_EVALUATIONS`` scorings per form; a form that needs more is reported as
not fully explored, never as verified.

Each end state keeps its answers and what the scorer made of them: the
routing checks (:mod:`builder.verification.routing`) change answers there.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from builder.questionnaire import build
from builder.valuesets import published
from cql_like.definitions import own_name
from cql_like.engine import CompiledRequest  # the scorer, compiled as the service does
from cql_like.gateway import Expression, Memo, compile_expression
from policies.index import reads
from policies.model import Criterion, Policy, Question, RequestKind, walk
from policies.tree import condition_expression
from questionnaires.checks import check_questionnaire

AS_OF = date(2026, 6, 15)
MAX_EVALUATIONS = 60_000
MAX_PRODUCT = 4096
SAMPLE = 1024
_DURATION = re.compile(r"(\d+)\s*'?(years?|months?|weeks?|days?)'?")
_NUMBER = re.compile(r"(?<![\w.@'-])(\d+(?:\.\d+)?)(?![\w.-])")
_DATE = re.compile(r"@(\d{4}-\d{2}-\d{2})")
ATTACHMENT = {"contentType": "application/pdf", "title": "report.pdf"}
NOTHING_ANSWERED = "nothing answered"


@dataclass(frozen=True)
class Value:
    value: Any
    label: str


@dataclass
class MetTable:
    names: list[str]
    rows: list[tuple[dict[str, str], bool | None]]
    unanswered: bool | None
    unstable: list[tuple[str, bool, str, bool | None]]

    def described(self) -> str:
        return f"{len(self.rows)} combinations of {', '.join(self.names) or 'no question'}"


@dataclass
class Leaf:
    outcome: str
    path: list[tuple[str, str]]  # (linkId, value labels)
    sections: list[str]
    answers: dict[str, list[Any]] = field(default_factory=dict)  # by linkId
    evaluation: Any = None  # what the scorer made of them


@dataclass
class Exploration:
    approvals: list[Leaf] = field(default_factory=list)
    others: list[Leaf] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    evaluations: int = 0
    complete: bool = True
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    merged: int = 0  # paths that joined one explored already


def _shift_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _shift_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, min(day.day, 28))


class Explorer:
    """One Questionnaire of a policy, with its compiled scorer."""

    def __init__(
        self, policy: Policy, kind: RequestKind, drug: str | None, *, memo: bool = True
    ) -> None:

        self.policy = policy
        self.kind = kind
        self.drug = drug
        questionnaire = build(policy, kind, drug)
        check_questionnaire(questionnaire, published(policy))
        self.package = CompiledRequest(policy, kind, questionnaire, drug)
        self.package.memo = Memo() if memo else None
        self.resource = {"resourceType": "QuestionnaireResponse", "status": "completed"}
        self.questions: dict[str, Question] = {
            name: info.question for name, info in self.package.index.questions.items()
        }
        self.domains = {name: self._domain(name) for name in self.questions}
        self._reader_cache: dict[str, list[tuple[Expression, frozenset[str]]]] = {}
        # question → (criteria, investigational conditions) whose definitions read it
        self._reading: dict[str, tuple[list[str], list[str]]] = {
            name: (
                [c.id for c in self.criteria() if name in reads(policy, c.met)],
                [
                    c.id
                    for c in (
                        policy.investigational.all_conditions() if policy.investigational else []
                    )
                    if name in reads(policy, c.applies) or c.answer_of == name
                ],
            )
            for name in self.questions
        }
        self._run: Exploration | None = None

    @property
    def title(self) -> str:
        return str(self.package.questionnaire["title"])

    def criteria(self) -> list[Criterion]:
        return list(walk(self.package.tree))

    # --- domains ---------------------------------------------------------------

    def _texts_reading(self, name: str) -> list[str]:
        texts = [c.met or "" for c in self.criteria() if name in reads(self.policy, c.met)]
        texts += [
            c.enable_when_expression
            for c in self.criteria()
            if c.enable_when_expression and name in reads(self.policy, c.enable_when_expression)
        ]
        texts += [v.expression for v in self.policy.derived]
        texts += [d.expression for d in self.package.definitions if d.role == "limit"]
        if self.policy.investigational:
            texts += [c.applies or "" for c in self.policy.investigational.all_conditions()]
        return texts

    def _constants(self, name: str) -> list[Any]:
        values: list[Any] = []
        pattern = re.compile(rf"%{name}\b")
        for text in self._texts_reading(name):
            if pattern.search(text):
                values += [float(n) for n in _NUMBER.findall(_DATE.sub("", text))]
        for criterion in self.criteria():
            for condition in [*criterion.enable_when, *criterion.children_enable_when]:
                if condition.question == name:
                    values.append(condition.answer)
            for question in criterion.questions:
                for condition in question.enable_when:
                    if condition.question == name:
                        values.append(condition.answer)
        return values

    def _domain(self, name: str) -> list[Value]:
        question = self.questions[name]
        info = self.package.index.questions[name]
        if question.type == "boolean":
            return [Value(True, "yes"), Value(False, "no")]
        if question.type == "choice":
            return [
                Value({"system": self.package.index.coding(o)["system"], "code": o.key}, o.display)
                for o in info.options
            ]
        if question.type == "attachment":
            return [Value(dict(ATTACHMENT), "attached")]
        if question.type in ("string", "text"):
            return [Value("x", "any text")]
        if question.type in ("integer", "decimal"):
            return self._numbers(question, name)
        if question.type == "date":
            return self._dates(name)
        return []

    def _numbers(self, question: Question, name: str) -> list[Value]:
        step = 1 if question.type == "integer" else 0.5
        points: set[float] = set()
        for constant in self._constants(name):
            if isinstance(constant, bool) or not isinstance(constant, int | float):
                continue
            points.update({constant - step, float(constant), constant + step})
        if question.min_value is not None:
            points.add(question.min_value)
        if question.max_value is not None:
            points.add(question.max_value)
        if question.above is not None:
            points.add(question.above + step)
        if not points:
            points = {question.min_value or 0, (question.min_value or 0) + step}
        if question.max_value is None:
            # far above every constant: a derived value (a ratio, a dose a day)
            # compares the answer with constants of its own
            points.add(max(abs(p) for p in points) * 10 + 10)
        lo = question.min_value if question.min_value is not None else float("-inf")
        hi = question.max_value if question.max_value is not None else float("inf")
        # an answer at or below `above` is a data error (unanswered), not an answer to explore
        floor = question.above if question.above is not None else float("-inf")
        chosen = sorted(p for p in points if lo <= p <= hi and p > floor)
        cast = int if question.type == "integer" else float
        return [Value(cast(p), f"{cast(p):g}") for p in chosen]

    def _dates(self, name: str) -> list[Value]:
        days: dict[date, str] = {AS_OF: "the evaluation date"}
        pattern = re.compile(rf"%{name}\b")
        for text in self._texts_reading(name):
            if not pattern.search(text):
                continue
            for amount, unit in _DURATION.findall(text):
                n = int(amount)
                if unit.startswith("year"):
                    anchor = _shift_years(AS_OF, n)
                elif unit.startswith("month"):
                    anchor = _shift_months(AS_OF, n)
                else:
                    anchor = AS_OF - timedelta(days=n * (7 if unit.startswith("week") else 1))
                what = f"{amount} {unit} before the evaluation date"
                days[anchor] = what
                days.setdefault(anchor - timedelta(days=1), f"a day more than {what}")
                days.setdefault(anchor + timedelta(days=1), f"a day less than {what}")
            for literal in _DATE.findall(text):
                day = date.fromisoformat(literal)
                days[day] = literal
                days.setdefault(day - timedelta(days=1), f"the day before {literal}")
                days.setdefault(day + timedelta(days=1), f"the day after {literal}")
        return [Value(day.isoformat(), label) for day, label in sorted(days.items())]

    # --- scoring -----------------------------------------------------------------

    def evaluate(self, answers: dict[str, list[Any]]) -> Any:
        return self.package.evaluate(self.resource, answers, AS_OF)

    @staticmethod
    def outcome(evaluation: Any) -> str:
        if evaluation.investigational:
            return "investigational"
        if evaluation.outcome_value is False:
            return "denied"
        if evaluation.outcome_value is None:
            return "review" if evaluation.review else "pended"
        return "approved"

    # --- one criterion -------------------------------------------------------------

    def met_table(self, criterion: Criterion) -> MetTable:
        """``met`` over the answer domains of the questions it reads (with
        *unanswered*): the whole cross product when it has at most
        ``MAX_PRODUCT`` combinations; otherwise every combination taking the
        same position in each domain (all first values, all second values, …)
        and a fixed random sample of ``SAMPLE`` more. A decided value must not
        change when an unanswered question is answered: checked against every
        completion (whole product), or one question at a time (sample)."""
        package = self.package
        name = own_name(criterion) if criterion.children else criterion.id
        expression = package.expressions[name]
        names = sorted(n for n in reads(self.policy, criterion.met) if n in self.domains)
        domains = [[None, *self.domains[n]] for n in names]
        results: dict[tuple[int, ...], bool | None] = {}

        def truth(key: tuple[int, ...]) -> bool | None:
            if key not in results:
                answers = {
                    package.link_of[n]: [domains[i][k].value]  # type: ignore[union-attr]
                    for i, (n, k) in enumerate(zip(names, key, strict=True))
                    if k
                }
                variables = package.answer_variables(answers, AS_OF)
                for derived in package.derived:
                    variables[derived.name] = derived.evaluate(self.resource, variables)
                results[key] = expression.truth(self.resource, variables)
            return results[key]

        sizes = [len(d) for d in domains]
        whole = math.prod(sizes) <= MAX_PRODUCT
        if whole:
            keys = list(itertools.product(*[range(n) for n in sizes]))
        else:
            same = [tuple(min(i, n - 1) for n in sizes) for i in range(max(sizes))]
            chance = random.Random(criterion.id)  # the same sample every build
            keys = same + [tuple(chance.randrange(n) for n in sizes) for _ in range(SAMPLE)]
        rows = [(_labels(names, domains, key), truth(key)) for key in keys]
        unanswered = truth(tuple(0 for _ in names))
        unstable: list[tuple[str, bool, str, bool | None]] = []
        for key in keys:
            decided = results[key]
            if decided is None or 0 not in key:
                continue
            blanks = [i for i, k in enumerate(key) if k == 0]
            if whole:
                fillings = [
                    dict(zip(blanks, filling, strict=True))
                    for filling in itertools.product(*[range(1, sizes[i]) for i in blanks])
                ]
            else:
                fillings = [{i: k} for i in blanks for k in range(1, sizes[i])]
            for filling in fillings:
                other_key = tuple(filling.get(i, k) for i, k in enumerate(key))
                other = truth(other_key)
                if other != decided:
                    given = _describe(names, domains, key) or NOTHING_ANSWERED
                    filled = ", ".join(
                        f"{names[i]} = {domains[i][c].label}"  # type: ignore[union-attr]
                        for i, c in filling.items()
                    )
                    unstable.append((given, decided, filled, other))
                    break
            # one overturned row is enough, but one with something answered
            # says more than the empty row (which the verifier reports as
            # decided when unanswered): look on past that one
            if any(row[0] != NOTHING_ANSWERED for row in unstable):
                break
        return MetTable(names, rows, unanswered, unstable)

    # --- the whole form ------------------------------------------------------------

    def run(self) -> Exploration:
        """The exploration (made once; the verifier and the decision tables share it)."""
        if self._run is None:
            self._run = self._explore()
        return self._run

    def _explore(self) -> Exploration:
        result = Exploration()
        by_link = {info.link_id: name for name, info in self.package.index.questions.items()}
        start = self.evaluate({})
        result.evaluations += 1
        self._visit({}, [], start, result, by_link, {})
        return result

    def _readers(self, name: str) -> list[tuple[Expression, frozenset[str]]]:
        """Every expression and condition that reads question ``name``, with
        the other questions each also reads."""
        package = self.package
        found: list[tuple[Expression, frozenset[str]]] = []

        def add(source: str | None, compiled: Expression) -> None:
            names = reads(self.policy, source) - {"as_of"}
            if name in names:
                found.append((compiled, frozenset(names - {name})))

        for criterion in self.criteria():
            if criterion.met is not None:
                key = own_name(criterion) if criterion.children else criterion.id
                add(criterion.met, package.expressions[key])
            if criterion.enable_when_expression is not None:
                written = criterion.enable_when_expression
                add(written, compile_expression(written, written))
            conditions = [*criterion.enable_when, *criterion.children_enable_when]
            for question in criterion.questions:
                conditions += question.enable_when
            for condition in conditions:
                if condition.question == name:
                    expression = condition_expression(condition)
                    found.append((compile_expression(expression, expression), frozenset()))
        for definition in package.definitions:
            if definition.role in ("applies", "limit"):
                add(definition.expression, package.expressions[definition.name])
        return found

    def _final(self, name: str, evaluation: Any) -> bool:
        """Whether nothing still to be decided reads this answer: every
        criterion reading it is decided (a decided criterion never changes:
        verified for each), and every investigational condition reading it."""
        criteria, applies = self._reading[name]
        return all(evaluation.statuses.get(c) != "unknown" for c in criteria) and all(
            evaluation.investigational_truth.get(a) is not None for a in applies
        )

    def _state(
        self, answers: dict[str, list[Any]], evaluation: Any, by_link: dict[str, str]
    ) -> tuple[Any, ...]:
        """What the rest of the exploration depends on: two paths in the same
        state have the same future, so it is explored once."""
        open_answers = frozenset(
            (link, json.dumps(values, sort_keys=True))
            for link, values in answers.items()
            if not self._final(by_link[link], evaluation)
        )
        waiting = frozenset(
            link
            for link, on in evaluation.enabled.items()
            if on and link in by_link and link not in answers
        )
        return (
            tuple(sorted(evaluation.statuses.items())),
            tuple(evaluation.investigational),
            tuple(sorted(evaluation.limits.items())),
            waiting,
            open_answers,
        )

    def value_class(
        self, name: str, value: Value, answers: dict[str, list[Any]]
    ) -> tuple[Any, ...] | None:
        """The class of a number or date given the answers so far: the truth
        of every expression and condition reading the question, when all the
        other answers they read are given (their results are then final, and
        nothing else reads it); None when one still waits for another answer,
        or for a truth value or option (each is a path of its own)."""
        if self.questions[name].type not in ("integer", "decimal", "date"):
            return None
        if name not in self._reader_cache:
            self._reader_cache[name] = self._readers(name)
        readers = self._reader_cache[name]
        given = {n for n, info in self.package.index.questions.items() if info.link_id in answers}
        if any(not others <= given for _expression, others in readers):
            return None
        link = self.package.link_of[name]
        variables = self.package.answer_variables({**answers, link: [value.value]}, AS_OF)
        for derived in self.package.derived:
            variables[derived.name] = derived.evaluate(self.resource, variables)
        return tuple(expression.truth(self.resource, variables) for expression, _ in readers)

    def _visit(
        self,
        answers: dict[str, list[Any]],
        path: list[tuple[str, str]],
        evaluation: Any,
        result: Exploration,
        by_link: dict[str, str],
        classes: dict[str, list[Any]],
    ) -> None:
        if result.evaluations > MAX_EVALUATIONS:
            result.complete = False
            return
        outcome = self.outcome(evaluation)
        if outcome == "pended":
            state = self._state(answers, evaluation, by_link)
            if state in result.seen:
                # the rest of the form is the same as on a path explored already
                result.merged += 1
                return
            result.seen.add(state)
            asked = [q for q in evaluation.missing_questions if q not in answers]
            if not asked:
                result.problems.append(
                    f"{self.package.questionnaire['id']}: pends for"
                    f" {', '.join(evaluation.missing)} with nothing left to ask, after"
                    f" {_path(path)}"
                )
                return
            link = asked[0]
            name = by_link[link]
            groups: dict[tuple[Any, ...], tuple[Value, Any, list[Value]]] = {}
            for number, value in enumerate(self.domains[name]):
                after = self.evaluate({**answers, link: [value.value]})
                result.evaluations += 1
                key = self.value_class(name, value, answers) or (number,)
                if key in groups:
                    groups[key][2].append(value)
                else:
                    groups[key] = (value, after, [value])
            for value, after, members in groups.values():
                self._visit(
                    {**answers, link: [value.value]},
                    [*path, (link, " / ".join(m.label for m in members))],
                    after,
                    result,
                    by_link,
                    {**classes, link: [m.value for m in members[1:]]},
                )
            return
        if outcome == "approved":
            result.approvals.append(Leaf(outcome, path, [], answers, evaluation))
            self._check_approval(answers, path, result, by_link, evaluation)
            # every other member of a class met on the way must hold up too
            for link, others in classes.items():
                for other in others:
                    if result.problems:
                        return
                    varied = {**answers, link: [other]}
                    again = self.evaluate(varied)
                    result.evaluations += 1
                    if self.outcome(again) != "approved":  # a class is decided alike
                        result.problems.append(
                            f"{self.package.questionnaire['id']}: {link} = {other} decides"
                            f" otherwise than the value it was grouped with, after {_path(path)}"
                        )
                        return
                    self._check_approval(varied, path, result, by_link, again)
            return
        cited = [*evaluation.investigational, *evaluation.unmet, *evaluation.review]
        result.others.append(Leaf(outcome, path, cited, answers, evaluation))

    def _check_approval(
        self,
        answers: dict[str, list[Any]],
        path: list[tuple[str, str]],
        result: Exploration,
        by_link: dict[str, str],
        evaluation: Any,
    ) -> None:
        """No enabled, unanswered question could overturn this approval."""
        for link, on in evaluation.enabled.items():
            if not on or link in answers or link not in by_link:
                continue
            if self.questions[by_link[link]].record_only:
                continue
            for value in self.domains[by_link[link]]:
                after = self.evaluate({**answers, link: [value.value]})
                result.evaluations += 1
                other = self.outcome(after)
                if other != "approved":
                    result.problems.append(
                        f"{self.package.questionnaire['id']}: approves after {_path(path)} while"
                        f" {link} is enabled and unanswered, but answering it"
                        f" {value.label!r} gives {other}"
                        f" ({', '.join(after.unmet or after.missing or after.review)}):"
                        " the question must be answered before an approval (make a criterion"
                        " read it, or make it record-only)"
                    )
                    return


def _labels(names: list[str], domains: list[list[Any]], key: tuple[int, ...]) -> dict[str, str]:
    return {n: domains[i][k].label for i, (n, k) in enumerate(zip(names, key, strict=True)) if k}


def _index(domain: list[Any], value: Any) -> int:
    return domain.index(value)


def _describe(names: list[str], domains: list[list[Any]], key: tuple[int, ...]) -> str:
    return ", ".join(
        f"{n} = {domains[i][k].label}" for i, (n, k) in enumerate(zip(names, key, strict=True)) if k
    )


def _path(path: list[tuple[str, str]]) -> str:
    return "; ".join(f"{link} = {labels}" for link, labels in path) or "no answer"


# The explorers of the last few policies explored: `dtr build` verifies a
# policy, then writes its decision tables from the same explorations.
_RECENT: list[tuple[Policy, list[Explorer]]] = []
_KEEP = 8


def explore_forms(policy: Policy, *, memo: bool = True) -> list[Explorer]:
    """One explorer per Questionnaire of the policy (building each: a
    condition that cannot reach the form is refused here)."""
    if memo:
        for known, explorers in _RECENT:
            if known is policy:
                return explorers
    explorers = [Explorer(policy, kind, drug, memo=memo) for kind, drug in policy.forms()]
    if memo:
        _RECENT.append((policy, explorers))
        del _RECENT[:-_KEEP]
    return explorers
