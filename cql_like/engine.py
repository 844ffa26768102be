"""The engine: evaluates a request's definitions over one response's answers.

A :class:`CompiledRequest` is made once per Questionnaire version (every
expression compiled then); :meth:`CompiledRequest.evaluate` runs per request
over the answers indexed once by linkId. Criteria are three-valued — met
(true), not met (false), unknown (empty: unanswered) — plus *not applicable*
when the criterion's group is disabled by its enableWhen. A criterion that
does not apply is left out of its parent's ``and``/``or`` (the engine passes
the operator's identity in its place); a parent whose children all do not
apply does not apply either.

Two readings happen here rather than in the definitions, as both concern a
whole request: a number at or below its question's ``above`` bound is a data
error and counts as unanswered (asked again, like a partial date), and a met
criterion whose document a pharmacist must read (``documentation.review``)
stands undecided, for review, when an approval would rest on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from cql_like.definitions import (
    applies_name,
    children_name,
    definitions,
    enabled_name,
    node_name,
    own_name,
    request_name,
)
from cql_like.gateway import Expression, Memo, compile_expression, date_span
from policies.index import PolicyIndex, index_policy, reads
from policies.model import (
    REQUEST_KINDS,
    AnyOf,
    Criterion,
    Node,
    Policy,
    RequestKind,
    document_question,
    walk,
)
from policies.tree import applicable_limits, request_tree
from questionnaires.checks import iter_items

Status = Literal["met", "not-met", "unknown", "not-applicable", "review"]
NA: Literal["not-applicable"] = "not-applicable"
Value = bool | None | Literal["not-applicable"]
_STATUS: dict[Any, Status] = {True: "met", False: "not-met", None: "unknown", NA: NA}


@dataclass(frozen=True)
class ItemSpec:
    """What the engine and the input checks need to know of one item."""

    link_id: str
    type: str
    parent: str | None
    question: str | None  # the policy question name, for question items
    enabled: Expression | None
    options: frozenset[tuple[str, str]]
    required: bool
    min_value: float | None
    max_value: float | None
    repeats: bool = False
    format: str | None = None  # a code's format the answer is checked against (icd-10-cm)
    signature_required: bool = False  # an attestation counted only when signed


@dataclass(frozen=True)
class Evaluation:
    """What the definitions say of one response."""

    outcome_value: bool | None
    statuses: dict[str, Status]
    unmet: list[str]
    missing: list[str]
    missing_questions: list[str]
    investigational: list[str]
    enabled: dict[str, bool]
    review: list[str] = field(default_factory=list)
    derived: dict[str, list[Any]] = field(default_factory=dict)
    limits: dict[str, bool | None] = field(default_factory=dict)
    investigational_truth: dict[str, bool | None] = field(default_factory=dict)
    # the attachments (linkIds) a pharmacist must read: the documents of the
    # criteria in ``review`` that are met on them
    documents: list[str] = field(default_factory=list)
    # the sections met when those documents say what the answers say (what a
    # pharmacist's approval rests on: the length of a branch, for one)
    met_on_documents: frozenset[str] = frozenset()


@dataclass
class _Run:
    variables: dict[str, Any]
    enabled: dict[str, bool]
    answered: set[str]
    values: dict[str, Value] = field(default_factory=dict)
    own: dict[str, Value] = field(default_factory=dict)
    children: dict[str, Value] = field(default_factory=dict)
    review: set[str] = field(default_factory=set)
    # met criteria held back for a pharmacist, who must read their document
    withheld: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Findings:
    unmet: list[str]
    missing: list[str]
    missing_questions: list[str]
    review: list[str]


class CompiledRequest:
    """One Questionnaire's logic, compiled once."""

    def __init__(
        self,
        policy: Policy,
        kind: RequestKind,
        questionnaire: dict[str, Any],
        drug: str | None = None,
        *,
        eager: bool = True,
    ) -> None:
        """``eager``: compile every definition now (else each when first
        evaluated, for a one-shot command)."""
        self.policy = policy
        self.kind: RequestKind = kind
        self.drug = drug
        self.questionnaire = questionnaire
        self.index: PolicyIndex = index_policy(policy, kind, drug)
        self.tree: list[Node] = request_tree(policy, kind, drug)
        self.definitions = definitions(policy, kind, questionnaire, drug)
        self.expressions = {
            d.name: compile_expression(d.name, d.expression, eager=eager) for d in self.definitions
        }
        names_by_link = {info.link_id: name for name, info in self.index.questions.items()}
        # the codings each choice item offers: its published ValueSet (or the
        # inline answerOption of a Questionnaire built before they were
        # published) holds exactly the policy's options for the question
        self.codings: dict[str, list[dict[str, str]]] = {
            info.link_id: [self.index.coding(option) for option in info.options]
            for info in self.index.questions.values()
            if info.options
        }
        self.items: dict[str, ItemSpec] = {}
        self._collect(questionnaire["item"], None, names_by_link)
        self.link_of = {name: info.link_id for name, info in self.index.questions.items()}
        # every question name any definition of the policy may read, present
        # in this Questionnaire or not (II.A reads both requests' questions)
        self._all_names = {
            q.name
            for k, d in policy.forms()
            for c in walk(request_tree(policy, k, d))
            for q in c.questions
        }
        self.derived = [self.expressions[value.name] for value in policy.derived]
        self.memo: Memo | None = None  # set by the build-time exploration only
        # answers that are dates: one of year or month precision is a span
        self.date_names = frozenset(
            name for name, info in self.index.questions.items() if info.question.type == "date"
        )
        self.date_links = frozenset(self.link_of[name] for name in self.date_names)
        # exclusions deny like any criterion, but are reported as excluded
        self.exclusions = frozenset(c.id for c in walk(self.tree) if c.kind == "exclusion")
        self.review_sections = {c.id for c in walk(self.tree) if c.on_unmet == "review"}
        # the steps of a routing chain: not met, they send the request on
        self.routes = frozenset(c.id for c in walk(self.tree) if c.kind == "route")
        # criterion → its attachment, where a pharmacist must read the document
        # (the request tree has turned documentation into that question)
        self.documents_to_read = {
            c.id: self.link_of[document_question(c)]
            for k in REQUEST_KINDS
            for c in walk(policy.request(k).criteria)
            if c.documentation is not None
            and c.documentation.review
            and document_question(c) in self.link_of
        }
        # answers at or below these bounds are data errors: unanswered
        self.floors = {
            name: info.question.above
            for name, info in self.index.questions.items()
            if info.question.above is not None
        }
        self._floor_links = {self.link_of[name]: name for name in self.floors}
        self.limits = applicable_limits(policy, drug)
        self.limit_expressions = [
            self.expressions[d.name] for d in self.definitions if d.role == "limit"
        ]
        self.questionnaire_items = {
            item["linkId"]: item for item, _ in iter_items(questionnaire["item"])
        }
        self._group_link = {
            item["linkId"]
            for item, _ in iter_items(questionnaire["item"])
            if item["type"] == "group"
        }

    def _collect(
        self, items: list[dict[str, Any]], parent: str | None, names: dict[str, str]
    ) -> None:
        for item in items:
            link_id = item["linkId"]
            extensions = {e["url"].rsplit("/", 1)[-1]: e for e in item.get("extension", [])}
            self.items[link_id] = ItemSpec(
                link_id=link_id,
                type=item["type"],
                parent=parent,
                question=names.get(link_id),
                enabled=self.expressions.get(enabled_name(link_id)),
                options=frozenset(
                    (c["system"], c["code"])
                    for c in (
                        [o["valueCoding"] for o in item["answerOption"]]
                        if "answerOption" in item
                        else self.codings.get(link_id, [])
                    )
                ),
                required=bool(item.get("required")),
                min_value=_bound(extensions.get("minValue")),
                max_value=_bound(extensions.get("maxValue")),
                repeats=bool(item.get("repeats")),
                format=(
                    self.index.questions[names[link_id]].question.format
                    if link_id in names
                    else None
                ),
                signature_required=link_id in names
                and self.index.questions[names[link_id]].question.signature_required,
            )
            self._collect(item.get("item", []), link_id, names)

    # --- enableWhen ---------------------------------------------------------

    def answer_variables(
        self, answers: Mapping[str, list[Any]], as_of: date | None = None
    ) -> dict[str, Any]:
        """The answers as FHIRPath variables; ``%as_of`` when a date is given
        (enableWhen never reads it)."""
        variables: dict[str, Any] = {name: [] for name in self._all_names}
        for name, link_id in self.link_of.items():
            variables[name] = self._valid(name, answers.get(link_id, []))
        if as_of is not None:
            variables["as_of"] = [as_of.isoformat()]
        return variables

    def _valid(self, name: str, values: list[Any]) -> list[Any]:
        """The answers that count: a number at or below its question's
        ``above`` bound is a data error, as if unanswered."""
        floor = self.floors.get(name)
        if floor is None:
            return list(values)
        return [v for v in values if isinstance(v, int | float) and v > floor]

    def enablement(
        self, resource: Mapping[str, Any], variables: Mapping[str, Any]
    ) -> dict[str, bool]:
        """Which items are enabled, in document order (an enableWhen only
        names earlier items, and a disabled group disables its items)."""
        enabled: dict[str, bool] = {}
        # items often share one condition (every LGSOC criterion: diagnosis =
        # LGSOC): evaluate each distinct expression once per response
        seen: dict[str, bool] = {}
        for link_id, spec in self.items.items():
            on = enabled.get(spec.parent, True) if spec.parent else True
            if on and spec.enabled is not None:
                source = spec.enabled.source
                if source not in seen:
                    seen[source] = self._truth_of(spec.enabled, resource, variables) is True
                on = seen[source]
            enabled[link_id] = on
        return enabled

    # --- criteria -----------------------------------------------------------

    def evaluate(
        self,
        resource: Mapping[str, Any],
        answers: Mapping[str, list[Any]],
        as_of: date,
        enabled: dict[str, bool] | None = None,
    ) -> Evaluation:
        variables = self.answer_variables(answers, as_of)
        if enabled is None:
            enabled = self.enablement(resource, variables)
        derived: dict[str, list[Any]] = {}
        for value in self.derived:
            derived[value.name] = variables[value.name] = self._evaluate(value, resource, variables)
        # a date known only to the year or month is asked again, in full; a
        # number out of its bound (a data error) is asked again
        answered = {
            link
            for link, values in answers.items()
            if values
            and not (link in self.date_links and date_span(_first(values)))
            and (link not in self._floor_links or variables[self._floor_links[link]])
        }
        answer_values = dict(variables)  # before the criteria's results join them
        run = _Run(variables, enabled, answered)
        outcome = self._criteria(run, resource)
        findings = self._findings(run)
        investigational = []
        applies: dict[str, bool | None] = {}
        if self.policy.investigational is not None:
            for condition in self.policy.investigational.all_conditions():
                expression = self.expressions.get(applies_name(condition.id))
                if expression is not None:
                    applies[condition.id] = self._truth_of(expression, resource, variables)
                    if applies[condition.id] is True:
                        investigational.append(condition.id)
        limits = {e.name: self._truth_of(e, resource, variables) for e in self.limit_expressions}
        to_read = frozenset(c for c in self.documents_to_read if run.values.get(c) is True)
        met_on_documents: frozenset[str] = frozenset()
        # only a request a pharmacist could approve: one that would be approved,
        # or is pended for review anyway; a denial, an investigational use or
        # missing information is decided as before
        if to_read and not investigational and (outcome is True or findings.review):
            again = _Run(answer_values, enabled, answered, withheld=to_read)
            second = self._criteria(again, resource)
            if outcome is not True or second is not True:
                # the approval rests on a document a person has to read
                met_on_documents = frozenset(
                    name
                    for name, value in run.values.items()
                    if value is True and again.values.get(name) is not True
                )
                run, outcome = again, second
                findings = self._findings(run)
        statuses = {
            name: "review" if name in run.review else _STATUS[value]
            for name, value in run.values.items()
        }
        return Evaluation(
            outcome_value=None if outcome == NA else outcome,
            statuses=statuses,
            unmet=findings.unmet,
            missing=findings.missing,
            missing_questions=findings.missing_questions,
            investigational=investigational,
            enabled=enabled,
            review=findings.review,
            derived=derived,
            limits=limits,
            investigational_truth=applies,
            documents=[
                link
                for section, link in self.documents_to_read.items()
                if section in run.withheld and section in run.review
            ],
            met_on_documents=met_on_documents,
        )

    def _criteria(self, run: _Run, resource: Mapping[str, Any]) -> Value:
        """The request's criteria, each node's value kept in ``run``."""
        top = [self._node(node, True, run, resource) for node in self.tree]
        return self._join(request_name(self.kind), self.tree, top, "all", run, resource)

    def _findings(self, run: _Run) -> _Findings:
        unmet: list[str] = []
        missing: list[str] = []
        missing_questions: list[str] = []
        review: list[str] = []
        for node in self.tree:
            self._cite(node, run, unmet)
            self._missing(node, run, missing, missing_questions, review)
        # a section cited twice (its own finding, and cited by another) once
        return _Findings(
            unmet=list(dict.fromkeys(unmet)),
            missing=list(dict.fromkeys(missing)),
            missing_questions=sorted(set(missing_questions), key=list(self.items).index),
            review=list(dict.fromkeys(review)),
        )

    def _applicable(self, link_id: str, inherited: bool, run: _Run) -> bool:
        if link_id in self._group_link:
            return run.enabled.get(link_id, False)
        return inherited

    def _node(self, node: Node, inherited: bool, run: _Run, resource: Mapping[str, Any]) -> Value:
        if isinstance(node, AnyOf):
            applicable = self._applicable(node.link_id, inherited, run)
            values = [self._node(c, applicable, run, resource) for c in node.any_of]
            value = (
                self._join(node.label, node.any_of, values, "any", run, resource)
                if applicable
                else NA
            )
            return self._store(node.label, value, run)
        criterion: Criterion = node
        if not self._applicable(criterion.id, inherited, run):
            for child in walk(criterion.children):
                run.values.setdefault(child.id, NA)
            return self._store(criterion.id, NA, run)
        if not criterion.children:
            return self._store(criterion.id, self._truth(criterion.id, run, resource), run)
        values = [self._node(c, True, run, resource) for c in criterion.children]
        if criterion.met is None:
            value = self._join(
                criterion.id, criterion.children, values, criterion.logic, run, resource
            )
            return self._store(criterion.id, value, run)
        joined = self._join(
            children_name(criterion), criterion.children, values, criterion.logic, run, resource
        )
        own = self._truth(own_name(criterion), run, resource)
        run.own[criterion.id] = own
        run.children[criterion.id] = joined
        identity = criterion.combine == "and"
        run.variables[own_name(criterion)] = _var(own)
        run.variables[children_name(criterion)] = [identity] if joined == NA else _var(joined)
        return self._store(criterion.id, self._truth(criterion.id, run, resource), run)

    def _join(
        self,
        name: str,
        nodes: list[Node] | list[Criterion],
        values: list[Value],
        logic: str,
        run: _Run,
        resource: Mapping[str, Any],
    ) -> Value:
        if all(v == NA for v in values):
            return NA
        identity = logic == "all"
        for node, value in zip(nodes, values, strict=True):
            run.variables[node_name(node)] = [identity] if value == NA else _var(value)
        return self._truth(name, run, resource)

    def _truth(self, name: str, run: _Run, resource: Mapping[str, Any]) -> bool | None:
        return self._truth_of(self.expressions[name], resource, run.variables)

    def _evaluate(
        self, expression: Expression, resource: Mapping[str, Any], variables: Mapping[str, Any]
    ) -> list[Any]:
        spans = {
            name: span
            for name in self.date_names & expression.reads
            for span in [date_span(_first(variables.get(name)))]
            if span is not None
        }
        if spans:
            # a date known to the year or month decides only when its first
            # and its last day give the same result; otherwise unknown
            first = self._evaluate_plain(
                expression, resource, {**variables, **{n: [s[0]] for n, s in spans.items()}}
            )
            last = self._evaluate_plain(
                expression, resource, {**variables, **{n: [s[1]] for n, s in spans.items()}}
            )
            return first if first == last else []
        return self._evaluate_plain(expression, resource, variables)

    def _evaluate_plain(
        self, expression: Expression, resource: Mapping[str, Any], variables: Mapping[str, Any]
    ) -> list[Any]:
        if self.memo is not None:  # the build-time exploration only
            return self.memo.evaluate(expression, resource, variables)
        return expression.evaluate(resource, variables)

    def _truth_of(
        self, expression: Expression, resource: Mapping[str, Any], variables: Mapping[str, Any]
    ) -> bool | None:
        return expression.truth_of(self._evaluate(expression, resource, variables))

    def _store(self, name: str, value: Value, run: _Run) -> Value:
        if value is False and name in self.review_sections:
            # not met, but the policy leaves it to a pharmacist: undecided here
            run.review.add(name)
            value = None
        if value is True and name in run.withheld:
            # met on a document a pharmacist must read first: undecided here
            run.review.add(name)
            value = None
        run.values[name] = value
        run.variables[name] = _var(value) if value != NA else []
        return value

    # --- reasons ------------------------------------------------------------

    def _cite(self, node: Node, run: _Run, unmet: list[str]) -> None:
        """Every section that is not met, down to the criteria that failed; a
        step of a routing chain only when nothing it routes to applies."""
        if run.values.get(node_name(node)) is not False:
            return
        if isinstance(node, AnyOf):
            for option in self._deciding(node.any_of, run):
                self._cite(option, run, unmet)
            return
        routed_on = node.routes_on and run.children.get(node.id, NA) != NA
        if not routed_on and (not node.children or run.own.get(node.id) is False):
            unmet.extend([node.id, *node.cites])
        children = self._deciding(node.children, run) if node.logic == "any" else node.children
        for child in children:
            self._cite(child, run, unmet)

    def _deciding(self, options: list[Criterion] | list[Node], run: _Run) -> list[Node]:
        """The alternatives of an any-group that decided it: a route (a step
        of a routing chain, "emergency? no") only sends the request on to the
        alternatives its answer enables, so while an alternative that is no
        route applies, that one decides and the routes are no reason."""
        onward = any(
            node_name(option) not in self.routes and run.values.get(node_name(option), NA) != NA
            for option in options
        )
        return [o for o in options if not (onward and node_name(o) in self.routes)]

    def _missing(
        self,
        node: Node,
        run: _Run,
        sections: list[str],
        questions: list[str],
        review: list[str],
    ) -> None:
        """Unknown sections and the enabled, unanswered questions that decide
        them; sections left to a pharmacist's review."""
        value = run.values.get(node_name(node))
        if value is True or value == NA:
            return
        if isinstance(node, AnyOf):
            for option in node.any_of:
                self._missing(option, run, sections, questions, review)
            return
        if node.id in run.review:
            # decided by a pharmacist, not missing information
            review.extend([node.id, *node.cites])
            return
        own_unknown = run.own.get(node.id, value) is None if node.met else False
        if (
            value is None
            and node.combine == "or"
            and run.own.get(node.id) is False
            and not node.routes_on
        ):
            # its own condition failed, so its children must decide: the reason
            # they are asked (EOCCO329 Renewal.II: started on samples); a route
            # answered no is no reason, and none of its questions is missing
            sections.append(node.id)
        if own_unknown:
            sections.append(node.id)
            for name in _reads(node, self.policy):
                link_id = self.link_of.get(name)
                if link_id and run.enabled.get(link_id) and link_id not in run.answered:
                    questions.append(link_id)
        if run.children.get(node.id) is True:
            # its children are met (one of `logic: any` suffices): only its own
            # condition (a document it needs) is missing, not the other children
            return
        for child in node.children:
            self._missing(child, run, sections, questions, review)


def _reads(criterion: Criterion, policy: Policy) -> list[str]:
    return sorted(reads(policy, criterion.met))


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and len(values) == 1 else None


def _var(value: Value) -> list[bool]:
    return [] if value is None or value == NA else [bool(value)]


def _bound(extension: dict[str, Any] | None) -> float | None:
    if extension is None:
        return None
    value = extension.get("valueInteger", extension.get("valueDecimal"))
    return None if value is None else float(value)
