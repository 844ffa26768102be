"""A pharmacist's review: the scorer's outcome held as a recommendation, and
the decision that replaces it.

While a request awaits review it is pended with reason *review*: the
sections the recommendation rests on are what the pharmacist looks at (for
an approval modified to the quantity limit, the limit's section ``QL``), and
the ClaimResponse and notice say the request is with a pharmacist. The
pharmacist then approves (the request type's authorization and quantity, as
an automatic approval would give: at the limit when the request is above
it), approves in full (the quantity requested, above the limit), denies
(citing the sections chosen), or pends asking the office for something;
each with a written rationale.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Literal

from scoring.determination import Determination

Action = Literal["approve", "approve-in-full", "deny", "pend"]
ACTIONS: tuple[Action, ...] = ("approve", "approve-in-full", "deny", "pend")
# the quantity-limit section generated from a policy's quantity_limits
# (policies.model.QuantityLimits.id): what a modified approval rests on
QL_SECTION = "QL"


def modified(determination: Determination) -> bool:
    """Whether the determination approves less than was requested (a
    quantity cut to the policy's limit): an adverse determination."""
    quantity = determination.quantity
    return determination.outcome == "approved" and quantity is not None and quantity.modified


def cited(determination: Determination) -> list[str]:
    """Every section a determination rests on, in the notice's order."""
    out: list[str] = []
    for section in [
        *determination.investigational,
        *determination.excluded,
        *determination.unmet,
        *determination.review,
        *([QL_SECTION] if modified(determination) else []),
    ]:
        if section not in out:
            out.append(section)
    return out


# what a decision leaves of the recommendation's findings: none of them
_CLEARED: dict[str, Any] = {
    "unmet": [], "investigational": [], "excluded": [], "review": [],
    "missing_questions": [], "review_documents": [], "authorization": None, "quantity": None,
}  # fmt: skip


def under_review(recommendation: Determination) -> Determination:
    """The request as it stands while a pharmacist decides: pended for review,
    citing what the recommendation rests on."""
    changes: dict[str, Any] = {
        **_CLEARED,
        "outcome": "pended",
        "review": cited(recommendation) or list(recommendation.missing),
        # what the pharmacist must read before approving
        "review_documents": recommendation.review_documents,
        # the office is told a pharmacist is deciding, not what the scorer thought
        "review_state": "awaiting-review",
    }
    return replace(recommendation, **changes)


def recommended(outcome: str, pend_reason: str | None, cut: bool = False) -> str:
    """The recommendation in one word: an outcome, ``review`` (a criterion
    the policy leaves to a pharmacist), or ``modified`` (an approval whose
    quantity is cut to the limit: ``cut``)."""
    if pend_reason == "review":
        return "review"
    return "modified" if outcome == "approved" and cut else outcome


def recommendation_word(determination: Determination) -> str:
    """A determination's recommendation in one word (see :func:`recommended`)."""
    return recommended(determination.outcome, determination.pend_reason, modified(determination))


def _reviewed(
    recommendation: Determination,
    base: Determination,
    reviewer: str,
    rationale: str,
    **changes: Any,
) -> Determination:
    """``base`` as the pharmacist's decision on ``recommendation``."""
    return replace(
        base,
        **{**_CLEARED, **changes} if base is recommendation else changes,
        review_state="reviewed",
        recommended=recommendation_word(recommendation),
        reviewer=reviewer,
        rationale=rationale,
        # the request answered the same form version, whoever decides it
        answered=recommendation.answered,
        not_carried=recommendation.not_carried,
    )


def denied(
    recommendation: Determination, reasons: list[str], rationale: str, reviewer: str, on: date
) -> Determination:
    """The pharmacist's denial, citing the sections chosen (exclusions as exclusions)."""
    unknown = [s for s in reasons if s not in recommendation.section_text]
    if not reasons or unknown:
        raise ValueError(
            "choose the policy sections the denial rests on"
            + (f" ({', '.join(unknown)} is not a section of the policy)" if unknown else "")
        )
    excluded = set(recommendation.excluded)
    investigational = set(recommendation.investigational)
    changes: dict[str, Any] = {
        **_CLEARED,
        "outcome": "investigational" if investigational & set(reasons) else "denied",
        "investigational": [s for s in reasons if s in investigational],
        "excluded": [s for s in reasons if s in excluded],
        "unmet": [s for s in reasons if s not in excluded and s not in investigational],
        "evaluated_at": on,
    }
    return _reviewed(recommendation, recommendation, reviewer, rationale, **changes)


def approved(
    recommendation: Determination,
    approval: Determination,
    rationale: str,
    reviewer: str,
    in_full: bool = False,
) -> Determination:
    """The pharmacist's approval (``approval`` carries the authorization and
    quantity, computed as of the decision: at the limit when the request is
    above it). ``in_full`` approves the quantity requested instead, which
    only a request above the limit needs."""
    if in_full:
        quantity = approval.quantity
        if quantity is None or not quantity.modified:
            raise ValueError(
                "the request is not above the quantity limit: approve it (approve-in-full"
                " is for a quantity above the limit)"
            )
        approval = replace(approval, quantity=replace(quantity, approved=quantity.requested))
    return _reviewed(recommendation, approval, reviewer, rationale)


def pended(
    recommendation: Determination, request: str, rationale: str, reviewer: str, on: date
) -> Determination:
    """The pharmacist asks the office for something before deciding."""
    if not request.strip():
        raise ValueError("say what the office should send")
    changes: dict[str, Any] = {
        **_CLEARED, "outcome": "pended", "evaluated_at": on, "requested": request.strip(),
    }  # fmt: skip
    return _reviewed(recommendation, recommendation, reviewer, rationale, **changes)
