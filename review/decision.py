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
each with a written rationale. Where the payer lets a pharmacist approve
named sections by confirming them ("pass to RPh; approve",
``review.approvals`` of its file), a request denied on them alone waits for
a pharmacist, and an approval may cite the sections confirmed.

A denial cites only what the criteria support: a section not met, unknown
or left to the pharmacist, an investigational use or an exclusion that
applies, the quantity limit of a request above it. Citing a section the criteria show met (or not applying) needs an
explicit override with its reason, kept with the decision and shown on the
notice apart from the criteria not met.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
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
    "overridden": [], "override": None, "confirmed": [],
}  # fmt: skip
# the criteria's statuses a denial may rest on: not met, not known (missing
# information), or left to the pharmacist's reading
CITABLE = frozenset({"not-met", "unknown", "review"})
# each status in the words the case page and a refusal use; ``review`` is left
# to the pharmacist: not met where the policy says so, or met on a document
STATUS_WORDS = {
    "met": "met", "not-met": "not met", "unknown": "unknown",
    "not-applicable": "not applicable", "review": "for review",
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


class UnsupportedCitation(ValueError):
    """A denial citing sections the criteria do not support, with no override."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses  # each section cited: its status
        cited_as = "; ".join(
            f"{section} is {STATUS_WORDS.get(status, status)}"
            for section, status in statuses.items()
        )
        super().__init__(
            f"a denial cannot cite a section the criteria do not support: {cited_as}. Cite the"
            " sections not met, unknown, for review, investigational or excluded, or give an"
            " override with its reason"
        )


def uncited(
    recommendation: Determination, reasons: list[str], statuses: Mapping[str, str]
) -> dict[str, str]:
    """The sections of ``reasons`` a denial may not rest on, with their
    status: each is met, or does not apply to the request. A denial rests
    on a criterion not met, unknown (missing information) or left to the
    pharmacist (``review``), or on what the recommendation itself rests on:
    an investigational use or an exclusion that applies, the quantity limit
    of a request above it (``QL``, met by an approval cut to the limit)."""
    applies = set(cited(recommendation))
    return {
        section: statuses.get(section, "not-applicable")
        for section in reasons
        if section not in applies and statuses.get(section) not in CITABLE
    }


def denied(
    recommendation: Determination,
    reasons: list[str],
    rationale: str,
    reviewer: str,
    on: date,
    *,
    statuses: Mapping[str, str],
    override: str | None = None,
) -> Determination:
    """The pharmacist's denial, citing the sections chosen (exclusions as
    exclusions). ``statuses`` are the criteria's (as the case shows them):
    a section they show met or not applying is refused
    (:class:`UnsupportedCitation`) unless ``override`` says why it is cited;
    it is then kept apart from the unmet sections, with that reason, and the
    notice never calls it not met."""
    unknown = [s for s in reasons if s not in recommendation.section_text]
    if not reasons or unknown:
        raise ValueError(
            "choose the policy sections the denial rests on"
            + (f" ({', '.join(unknown)} is not a section of the policy)" if unknown else "")
        )
    unsupported = uncited(recommendation, reasons, statuses)
    override = (override or "").strip() or None
    if unsupported and override is None:
        raise UnsupportedCitation(unsupported)
    if override is not None and not unsupported:
        raise ValueError(
            "an override is for citing a section the criteria show met or not applying;"
            " every section cited is supported: leave the override empty"
        )
    excluded = set(recommendation.excluded)
    investigational = set(recommendation.investigational)
    supported = [s for s in reasons if s not in unsupported]
    changes: dict[str, Any] = {
        **_CLEARED,
        "outcome": "investigational" if investigational & set(reasons) else "denied",
        "investigational": [s for s in supported if s in investigational],
        "excluded": [s for s in supported if s in excluded],
        "unmet": [s for s in supported if s not in excluded and s not in investigational],
        "overridden": list(unsupported),
        "override": override,
        "evaluated_at": on,
    }
    return _reviewed(recommendation, recommendation, reviewer, rationale, **changes)


class NotConfirmable(ValueError):
    """An approval confirming sections the payer does not let a pharmacist
    approve by confirming them."""

    def __init__(self, sections: list[str], confirmable: Collection[str]) -> None:
        self.sections = sections
        allowed = ", ".join(confirmable) or "none of this policy's"
        super().__init__(
            f"an approval can confirm only the sections the payer lets a pharmacist approve"
            f" (its review.approvals: {allowed}), not {', '.join(sections)}"
        )


def approved(
    recommendation: Determination,
    approval: Determination,
    rationale: str,
    reviewer: str,
    in_full: bool = False,
    confirmed: Sequence[str] = (),
    confirmable: Collection[str] = (),
) -> Determination:
    """The pharmacist's approval (``approval`` carries the authorization and
    quantity, computed as of the decision: at the limit when the request is
    above it). ``in_full`` approves the quantity requested instead, which
    only a request above the limit needs. ``confirmed``: the sections the
    pharmacist confirmed ("pass to RPh; approve" when X is confirmed), each
    one the payer lets a pharmacist approve (``confirmable``), or
    :class:`NotConfirmable`; the approval cites them."""
    confirmed = list(dict.fromkeys(confirmed))
    refused = [s for s in confirmed if s not in confirmable]
    if refused:
        raise NotConfirmable(refused, confirmable)
    if in_full:
        quantity = approval.quantity
        if quantity is None or not quantity.modified:
            raise ValueError(
                "the request is not above the quantity limit: approve it (approve-in-full"
                " is for a quantity above the limit)"
            )
        approval = replace(approval, quantity=replace(quantity, approved=quantity.requested))
    return _reviewed(recommendation, approval, reviewer, rationale, confirmed=confirmed)


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
