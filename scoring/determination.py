"""The coverage determination: what the engine's evaluation means for a request.

Rules, in order (see docs/conformance.md):

1. **investigational** when an investigational condition applies (II.A, a
   listed diagnosis, or the catch-all II), citing it and every unmet section;
2. **denied** when any applicable criterion is not met, citing every unmet
   section (an exclusion denies; a request above the quantity limit is denied
   citing ``QL``);
3. **pended** when any criterion is unknown, listing the enabled questions
   left unanswered — missing information never denies;
4. **approved** otherwise: authorization from the evaluation date for the
   policy's length (end inclusive: the day before the N-month anniversary) and the quantity
   limit of the requested product.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from builder.policy import AuthorizationTerm, QuantityLimit
from builder.questionnaire import REQUESTED_PRODUCT
from cql_like.engine import CompiledRequest, Evaluation

Outcome = Literal["approved", "denied", "investigational", "pended"]


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

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "months": self.months}


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
            },
            "missingQuestions": list(self.missing_questions),
            "authorization": self.authorization.to_json() if self.authorization else None,
            "quantityLimits": [
                {
                    "quantity": limit.quantity,
                    "unit": limit.unit,
                    "periodDays": limit.period_days,
                    "product": limit.product,
                }
                for limit in self.quantity_limits
            ],
            "questionnaire": self.questionnaire,
            "evaluatedAt": self.evaluated_at.isoformat(),
        }


def from_json(package: CompiledRequest, data: dict[str, Any], subject: Any = None) -> Determination:
    """A stored determination (``Determination.to_json``) back as an object,
    with the texts of the package it was decided by (for its notice)."""
    authorization = None
    if data["authorization"]:
        authorization = Authorization(
            date.fromisoformat(data["authorization"]["start"]),
            date.fromisoformat(data["authorization"]["end"]),
            data["authorization"]["months"],
            _term(package).assumed,
        )
    return Determination(
        policy=data["policy"],
        request=data["request"],
        outcome=data["outcome"],
        unmet=data["sections"]["unmet"],
        missing=data["sections"]["missing"],
        investigational=data["sections"]["investigational"],
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
        questionnaire=data["questionnaire"],
        evaluated_at=date.fromisoformat(data["evaluatedAt"]),
        subject=subject,
        **_described_by(package),
    )


def _term(package: CompiledRequest) -> AuthorizationTerm:
    authorization = package.policy.authorization
    return authorization.initial if package.kind == "initial" else authorization.renewal


def _described_by(package: CompiledRequest) -> dict[str, Any]:
    """What a notice says of the policy, its sections and questions."""
    policy = package.policy
    return {
        "policy_number": policy.policy.number or policy.id,
        "section_text": package.index.section_text,
        "sections_system": policy.policy.sections_system,
        "question_text": {
            info.link_id: info.question.text for info in package.index.questions.values()
        },
        "payer": policy.policy.payer.name,
        "payer_id": policy.policy.payer.identifier,
        "drug": policy.drugs[0].name,
    }


def decide(
    package: CompiledRequest,
    evaluation: Evaluation,
    answers: dict[str, list[Any]],
    as_of: date,
    subject: dict[str, Any] | None = None,
) -> Determination:
    policy = package.policy
    outcome: Outcome
    if evaluation.investigational:
        outcome = "investigational"
    elif evaluation.outcome_value is False:
        outcome = "denied"
    elif evaluation.outcome_value is None:
        outcome = "pended"
    else:
        outcome = "approved"
    authorization = None
    if outcome == "approved":
        term = (
            policy.authorization.initial
            if package.kind == "initial"
            else policy.authorization.renewal
        )
        end = anniversary(as_of, term.months) - timedelta(days=1)
        authorization = Authorization(as_of, end, term.months, term.assumed)
    questionnaire = package.questionnaire
    return Determination(
        policy=policy.id,
        request=package.kind,
        outcome=outcome,
        unmet=evaluation.unmet,
        missing=evaluation.missing,
        investigational=evaluation.investigational,
        missing_questions=evaluation.missing_questions,
        authorization=authorization,
        quantity_limits=_limits(package, answers),
        questionnaire=f"{questionnaire['url']}|{questionnaire['version']}",
        evaluated_at=as_of,
        subject=subject,
        **_described_by(package),
    )


def _limits(package: CompiledRequest, answers: dict[str, list[Any]]) -> list[QuantityLimit]:
    """The limit of the requested product; all limits when none is named."""
    limits = package.policy.quantity_limits.limits
    link = package.link_of.get(REQUESTED_PRODUCT)
    chosen = answers.get(link, []) if link else []
    if chosen:
        code = chosen[0]["code"]
        matching = [limit for limit in limits if limit.code and limit.code.code == code]
        if matching:
            return matching
    return list(limits)
