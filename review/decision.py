"""A pharmacist's review: the scorer's outcome held as a recommendation, and
the decision that replaces it.

While a request awaits review it is pended with reason *review*: the
sections the recommendation rests on are what the pharmacist looks at, and
the ClaimResponse and notice say the request is with a pharmacist. The
pharmacist then approves (the request type's authorization and quantity, as
an automatic approval would give), denies (citing the sections chosen), or
pends asking the office for something; each with a written rationale.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Literal

from scoring.determination import Determination

Action = Literal["approve", "deny", "pend"]
ACTIONS: tuple[Action, ...] = ("approve", "deny", "pend")


def cited(determination: Determination) -> list[str]:
    """Every section a determination rests on, in the notice's order."""
    out: list[str] = []
    for section in [
        *determination.investigational,
        *determination.excluded,
        *determination.unmet,
        *determination.review,
    ]:
        if section not in out:
            out.append(section)
    return out


# what a decision leaves of the recommendation's findings: none of them
_CLEARED: dict[str, Any] = {
    "unmet": [], "investigational": [], "excluded": [], "review": [],
    "missing_questions": [], "authorization": None, "quantity": None,
}  # fmt: skip


def under_review(recommendation: Determination) -> Determination:
    """The request as it stands while a pharmacist decides: pended for review,
    citing what the recommendation rests on."""
    changes: dict[str, Any] = {
        **_CLEARED,
        "outcome": "pended",
        "review": cited(recommendation) or list(recommendation.missing),
        # the office is told a pharmacist is deciding, not what the scorer thought
        "review_state": "awaiting-review",
    }
    return replace(recommendation, **changes)


def recommended(outcome: str, pend_reason: str | None) -> str:
    """The recommendation in one word: an outcome, or ``review`` (a criterion
    the policy leaves to a pharmacist)."""
    return "review" if pend_reason == "review" else outcome


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
        recommended=recommended(recommendation.outcome, recommendation.pend_reason),
        reviewer=reviewer,
        rationale=rationale,
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
    recommendation: Determination, approval: Determination, rationale: str, reviewer: str
) -> Determination:
    """The pharmacist's approval (``approval`` carries the authorization and
    quantity, computed as of the decision)."""
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
