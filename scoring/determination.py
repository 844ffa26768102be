"""The coverage determination: what the engine's evaluation means for a request.

Rules, in order (see docs/conformance.md):

1. **investigational** when an investigational condition applies (II.A, a
   listed diagnosis, or the catch-all II), citing it and every unmet section;
2. **denied** when any applicable criterion is not met, citing every unmet
   section (an exclusion denies; a request above the quantity limit is denied
   citing ``QL`` unless the policy approves it modified to the limit);
3. **pended for review** when a criterion the policy leaves to a pharmacist
   is not met, naming it, or when the approval would rest on a document a
   pharmacist must read, naming the criterion and the document;
4. **pended for missing information** when any criterion is unknown, listing
   the enabled questions left unanswered — missing information never denies;
5. **approved** otherwise: authorization from the evaluation date for the
   length of the request type, of the shortest met branch that sets one, or
   the planned length of therapy when shorter (end inclusive: the day before
   the N-month anniversary; never past a cap on total therapy time), and the
   quantity limit of the requested product — modified to it when over.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

from cql_like.definitions import limit_applies_name, limit_within_name
from cql_like.engine import CompiledRequest, Evaluation
from policies.generated import PLANNED_MONTHS, REQUESTED_QUANTITY, THERAPY_START
from policies.model import (
    AnyOf,
    AuthorizationTerm,
    Criterion,
    Node,
    QuantityLimit,
    document_question,
    form_criteria,
    walk,
)

Outcome = Literal["approved", "denied", "investigational", "pended"]
PendReason = Literal["review", "missing-information"]


@dataclass(frozen=True)
class OneOf:
    """A part of the policy met by any one of its alternatives (an
    ``any_of``, or ``logic: any`` children): the criterion it belongs to
    (None for an ``any_of``) and, for each alternative, every section it
    holds — what a notice needs to say "one of these is required" of the
    sections a denial cites, rather than "each of these"."""

    section: str | None
    alternatives: list[list[str]]


def anniversary(start: date, months: int) -> date:
    """The same day ``months`` calendar months later; when that month is too
    short (31 August + 6 months, 29 February + 12), the first day of the month
    after, so that an authorization ending the day before covers the whole of
    the shorter month."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    if start.day > calendar.monthrange(year, month)[1]:
        return date(year, month, 1) + timedelta(days=calendar.monthrange(year, month)[1])
    return date(year, month, start.day)


@dataclass(frozen=True)
class Authorization:
    start: date
    end: date
    months: int
    assumed: bool
    basis: str | None = None  # why this length: the branch, the planned therapy, the default

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "months": self.months,
        }
        if self.assumed:
            out["assumed"] = True
        if self.basis:
            out["basis"] = self.basis
        return out


@dataclass(frozen=True)
class ApprovedQuantity:
    """What an approval allows: the requested quantity, or the limit when the
    policy approves a request over it modified to the limit."""

    requested: int
    approved: int
    unit: str
    period_days: int

    @property
    def modified(self) -> bool:
        return self.approved < self.requested

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "approved": self.approved,
            "unit": self.unit,
            "periodDays": self.period_days,
            "modified": self.modified,
        }


@dataclass(frozen=True)
class Determination:
    policy: str
    policy_number: str
    request: Literal["initial", "renewal"]
    outcome: Outcome
    unmet: list[str]
    missing: list[str]
    investigational: list[str]
    missing_questions: list[str]
    authorization: Authorization | None
    quantity_limits: list[QuantityLimit]
    questionnaire: str
    evaluated_at: date
    section_text: dict[str, str] = field(repr=False)
    question_text: dict[str, str] = field(repr=False)
    sections_system: str = ""
    payer: str = ""
    payer_id: str = ""
    drug: str = ""
    subject: dict[str, Any] | None = None
    review: list[str] = field(default_factory=list)
    # the attachments (linkIds) the pharmacist must read before approving
    review_documents: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # exclusions that apply (they deny)
    quantity: ApprovedQuantity | None = None
    criteria_basis: str | None = None  # the payer default, when the policy states no criteria
    # a pharmacist's part: awaiting-review (the scorer's outcome is only a
    # recommendation) or reviewed; who decided, why, what a pend asks for
    review_state: str | None = None
    recommended: str | None = None  # the scorer's outcome, when it was a recommendation
    reviewer: str | None = None
    rationale: str | None = None
    requested: str | None = None
    # a pharmacist's override: sections a decision cites although the
    # criteria show them met or not applying, and why (never listed as unmet)
    overridden: list[str] = field(default_factory=list)
    override: str | None = None
    # a pharmacist's approval: the sections confirmed ("pass to RPh; approve")
    confirmed: list[str] = field(default_factory=list)
    # the url|version the response named, when it was an earlier version than
    # the one in effect, and the linkIds whose answers did not carry over
    answered: str | None = None
    not_carried: list[str] = field(default_factory=list)
    # what was normalised in the response as received (an attachment sent as
    # a data URL, its prefix stripped), each said once
    normalised: list[str] = field(default_factory=list)
    # what a notice says of the policy's shape, from the form (never stored):
    # its one-of parts, outermost first, and each attachment question with
    # the document it asks for
    one_of: list[OneOf] = field(default_factory=list, repr=False)
    documents: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def pend_reason(self) -> PendReason | None:
        if self.outcome != "pended":
            return None
        return "review" if self.review else "missing-information"

    def to_json(self) -> dict[str, Any]:
        """The stable determination shape."""
        return {
            "policy": self.policy,
            "request": self.request,
            "outcome": self.outcome,
            "sections": {
                "unmet": list(self.unmet),
                "missing": list(self.missing),
                "investigational": list(self.investigational),
                "review": list(self.review),
                "excluded": list(self.excluded),
            },
            "pendReason": self.pend_reason,
            "quantity": self.quantity.to_json() if self.quantity else None,
            "missingQuestions": list(self.missing_questions),
            **({"reviewDocuments": list(self.review_documents)} if self.review_documents else {}),
            "authorization": self.authorization.to_json() if self.authorization else None,
            "quantityLimits": [
                {
                    "quantity": limit.max_units,
                    "unit": limit.unit,
                    "periodDays": limit.period_days,
                    "product": limit.product,
                }
                for limit in self.quantity_limits
            ],
            "questionnaire": self.questionnaire,
            "evaluatedAt": self.evaluated_at.isoformat(),
            **({"review": self._review_json()} if self.review_state else {}),
            **(
                {"answered": {"questionnaire": self.answered, "notCarried": self.not_carried}}
                if self.answered
                else {}
            ),
            **({"normalised": list(self.normalised)} if self.normalised else {}),
        }

    def _review_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in {
                "state": self.review_state,
                "recommended": self.recommended,
                "reviewer": self.reviewer,
                "rationale": self.rationale,
                "requested": self.requested,
                "override": (
                    {"sections": list(self.overridden), "reason": self.override}
                    if self.override
                    else None
                ),
                "confirmed": list(self.confirmed) or None,
            }.items()
            if v is not None
        }


def from_json(package: CompiledRequest, data: dict[str, Any], subject: Any = None) -> Determination:
    """A stored determination (``Determination.to_json``) back as an object,
    with the texts of the package it was decided by (for its notice). Stored
    records of older builds lack the newer keys; they read as absent."""
    authorization = None
    stored = data["authorization"]
    if stored:
        authorization = Authorization(
            date.fromisoformat(stored["start"]),
            date.fromisoformat(stored["end"]),
            stored["months"],
            stored.get("assumed", _term(package).assumed),
            stored.get("basis", _term(package).basis),
        )
    quantity = data.get("quantity")
    review = data.get("review", {})
    return Determination(
        policy=data["policy"],
        request=data["request"],
        outcome=data["outcome"],
        unmet=data["sections"]["unmet"],
        missing=data["sections"]["missing"],
        investigational=data["sections"]["investigational"],
        review=data["sections"].get("review", []),
        review_documents=data.get("reviewDocuments", []),
        excluded=data["sections"].get("excluded", []),
        missing_questions=data["missingQuestions"],
        authorization=authorization,
        quantity_limits=[
            QuantityLimit(
                product=q["product"],
                quantity=q["quantity"],
                unit=q["unit"],
                period_days=q["periodDays"],
            )
            for q in data["quantityLimits"]
        ],
        quantity=(
            ApprovedQuantity(
                quantity["requested"],
                quantity["approved"],
                quantity["unit"],
                quantity["periodDays"],
            )
            if quantity
            else None
        ),
        questionnaire=data["questionnaire"],
        evaluated_at=date.fromisoformat(data["evaluatedAt"]),
        subject=subject,
        review_state=review.get("state"),
        recommended=review.get("recommended"),
        reviewer=review.get("reviewer"),
        rationale=review.get("rationale"),
        requested=review.get("requested"),
        overridden=review.get("override", {}).get("sections", []),
        override=review.get("override", {}).get("reason"),
        confirmed=review.get("confirmed", []),
        answered=data.get("answered", {}).get("questionnaire"),
        not_carried=data.get("answered", {}).get("notCarried", []),
        normalised=data.get("normalised", []),
        **_described_by(package),
    )


def approve(
    package: CompiledRequest,
    evaluation: Evaluation,
    answers: dict[str, list[Any]],
    as_of: date,
    subject: dict[str, Any] | None = None,
) -> Determination:
    """An approval a pharmacist gives, whatever the criteria said: the
    request type's authorization (of the met branches, the planned therapy,
    the caps, as for an automatic approval) and the quantity within the
    limit that applies."""
    found = decide(package, evaluation, answers, as_of, subject)
    limits = _limits(package, evaluation)
    return replace(
        found,
        outcome="approved",
        unmet=[], missing=[], investigational=[], review=[], excluded=[], missing_questions=[],
        review_documents=[],
        authorization=_authorization(package, evaluation, answers, as_of),
        quantity=_approved_quantity(package, answers, limits),
    )  # fmt: skip


def _term(package: CompiledRequest) -> AuthorizationTerm:
    return package.policy.authorization.term(package.kind)


def _described_by(package: CompiledRequest) -> dict[str, Any]:
    """What a notice says of the policy, its sections and questions."""
    policy = package.policy
    request = policy.request(package.kind)
    return {
        "policy_number": policy.policy.number or policy.id,
        "section_text": package.index.section_text,
        "sections_system": policy.policy.sections_system,
        "question_text": {
            info.link_id: info.question.text for info in package.index.questions.values()
        },
        "payer": policy.policy.payer.name,
        "payer_id": policy.policy.payer.identifier,
        "drug": policy.drug(package.drug).name,
        "criteria_basis": request.basis if request.assumed else None,
        "one_of": _one_of(package.tree),
        "documents": _documents(package),
    }


def _one_of(tree: list[Node]) -> list[OneOf]:
    """Every part of a request's criteria that one alternative meets,
    outermost first; alternatives nested without a condition of their own
    (``logic: any`` under ``logic: any``) are alternatives of the outer part."""

    def any_of(node: Node) -> bool:
        return isinstance(node, AnyOf) or (node.logic == "any" and bool(node.children))

    def alternatives(node: Node) -> list[Node]:
        members: list[Node] = list(node.any_of) if isinstance(node, AnyOf) else node.children
        out: list[Node] = []
        for member in members:
            nested = isinstance(member, Criterion) and member.met is None and any_of(member)
            out += alternatives(member) if nested else [member]
        return out

    found: list[OneOf] = []

    def visit(nodes: list[Node]) -> None:
        for node in nodes:
            if any_of(node):
                section = node.id if isinstance(node, Criterion) else None
                held = [
                    list(dict.fromkeys(s for c in walk([member]) for s in (c.id, *c.cites)))
                    for member in alternatives(node)
                ]
                found.append(OneOf(section, held))
            visit(list(node.any_of) if isinstance(node, AnyOf) else node.children)

    visit(tree)
    return found


def _documents(package: CompiledRequest) -> dict[str, str]:
    """Each attachment question's linkId, with the document it asks for: a
    criterion's ``documentation``, or the question's own text."""
    by_question = {
        document_question(c): c.documentation.document
        for c in form_criteria(package.policy, package.kind, package.drug)
        if c.documentation is not None
    }
    return {
        info.link_id: by_question.get(info.question.name, info.question.text)
        for info in package.index.questions.values()
        if info.question.type == "attachment"
    }


def decide(
    package: CompiledRequest,
    evaluation: Evaluation,
    answers: dict[str, list[Any]],
    as_of: date,
    subject: dict[str, Any] | None = None,
) -> Determination:
    outcome: Outcome
    if evaluation.investigational:
        outcome = "investigational"
    elif evaluation.outcome_value is False:
        outcome = "denied"
    elif evaluation.outcome_value is None:
        outcome = "pended"
    else:
        outcome = "approved"
    limits = _limits(package, evaluation)
    authorization = quantity = None
    if outcome == "approved":
        authorization = _authorization(package, evaluation, answers, as_of)
        quantity = _approved_quantity(package, answers, limits)
    questionnaire = package.questionnaire
    return Determination(
        policy=package.policy.id,
        request=package.kind,
        outcome=outcome,
        unmet=[s for s in evaluation.unmet if s not in package.exclusions],
        excluded=[s for s in evaluation.unmet if s in package.exclusions],
        missing=evaluation.missing,
        investigational=evaluation.investigational,
        review=evaluation.review if outcome == "pended" else [],
        review_documents=evaluation.documents if outcome == "pended" else [],
        missing_questions=evaluation.missing_questions,
        authorization=authorization,
        quantity_limits=[limit for limit, _kept in limits],
        quantity=quantity,
        questionnaire=f"{questionnaire['url']}|{questionnaire['version']}",
        evaluated_at=as_of,
        subject=subject,
        **_described_by(package),
    )


def _answer(package: CompiledRequest, answers: dict[str, list[Any]], name: str) -> Any:
    link = package.link_of.get(name)
    values = answers.get(link, []) if link else []
    return values[0] if values else None


def _authorization(
    package: CompiledRequest, evaluation: Evaluation, answers: dict[str, list[Any]], as_of: date
) -> Authorization:
    term = _term(package)
    months, assumed, basis = term.months, term.assumed, term.basis
    # a branch met on a document the pharmacist has read counts as met
    met_branches = [
        b
        for b in term.branches
        if evaluation.statuses.get(b.section) == "met" or b.section in evaluation.met_on_documents
    ]
    if met_branches:
        branch = min(met_branches, key=lambda b: b.months)
        months, assumed = branch.months, False
        basis = branch.basis or f"the length for {branch.section}"
    planned = _answer(package, answers, PLANNED_MONTHS)
    if term.lesser_of_planned and planned is not None and planned < months:
        months, assumed, basis = int(planned), False, "the planned length of therapy"
    end = anniversary(as_of, months) - timedelta(days=1)
    started = _answer(package, answers, THERAPY_START)
    # the caps on therapy time in all: the policy's, and each met branch's
    caps = [(term.max_total_months, "")] + [
        (cap.max_total_months, f" for {cap.section}")
        for cap in term.branch_caps
        if evaluation.statuses.get(cap.section) == "met"
        or cap.section in evaluation.met_on_documents
    ]
    for total, where in caps:
        if total is None or started is None:
            continue
        cap_end = anniversary(date.fromisoformat(started), total) - timedelta(days=1)
        if cap_end < end:
            end, basis = cap_end, f"the limit of {total} months of therapy in all{where}"
    return Authorization(as_of, end, months, assumed, basis)


def _limits(
    package: CompiledRequest, evaluation: Evaluation
) -> list[tuple[QuantityLimit, bool | None]]:
    """The limits that apply to this request (its product, its indication),
    each with whether the request keeps within it; all of the drug's limits
    when which applies is not known yet."""
    limits = package.limits
    applying = [
        (limit, evaluation.limits.get(limit_within_name(number)))
        for number, limit in enumerate(limits)
        if evaluation.limits.get(limit_applies_name(number)) is True
    ]
    return applying or [(limit, None) for limit in limits]


def _approved_quantity(
    package: CompiledRequest,
    answers: dict[str, list[Any]],
    limits: list[tuple[QuantityLimit, bool | None]],
) -> ApprovedQuantity | None:
    requested = _answer(package, answers, REQUESTED_QUANTITY)
    if requested is None or not package.limits:
        return None
    applying = [limit for limit, _kept in limits]
    allowed = min(limit.max_units for limit in applying)
    over = any(kept is False for _limit, kept in limits)
    approved = min(int(requested), allowed) if over else int(requested)
    return ApprovedQuantity(int(requested), approved, applying[0].unit, applying[0].period_days)
