"""The payer's configuration, as data beside the policy files
(``policies/payers/{identifier}.yaml``): who the payer is and how to reach
it, its decision deadlines (standard and expedited, each with the law it
comes from), the member's appeal rights and how to use them, by when the office sends
what a pended request lacks and what happens if nothing comes, and which of
the scorer's outcomes are only recommendations until a pharmacist decides,
and the time zone its people read times in (stdlib ``zoneinfo``, its data
from the ``tzdata`` package where the system has none).

Notices, the review queue and the metrics read it; nothing of it is written
in a template. A payer whose law has a licensed professional make every
decision to authorize less than was requested (California's Knox-Keene Act,
Medicaid managed care) lists ``modified``: an approval the policy cuts to its
quantity limit then waits for a pharmacist too. A file that does not fit the model is refused naming the
file and the field, as a policy file is.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from policies.loader import SAFE_LOADER
from review.decision import recommendation_word
from scoring.determination import Determination

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
# the scorer's outcomes a payer may send to a pharmacist: a denial, an
# investigational finding, a criterion the policy leaves to review, an
# approval for less than was requested (a quantity modified to the limit)
Reviewable = Literal["denied", "investigational", "review", "modified"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deadline(Strict):
    hours: int = Field(gt=0, description="From receipt of the request to the decision")
    text: NonEmpty = Field(description="The deadline in plain words, for notices")
    citation: NonEmpty = Field(description="The law or rule it comes from")


class Deadlines(Strict):
    standard: Deadline
    expedited: Deadline


class Contact(Strict):
    department: NonEmpty
    phone: str | None = Field(
        None, description="Set by the payer; unset, notices give the instructions"
    )
    fax: str | None = None
    website: str | None = None
    instructions: NonEmpty = Field(description="How to reach the payer, in plain words")


class AppealStep(Strict):
    title: NonEmpty
    how: NonEmpty = Field(description="What to do, in plain words")
    deadline: NonEmpty = Field(description="By when, in plain words")
    citation: NonEmpty
    contact: str | None = None


class Appeals(Strict):
    route: Literal["medicaid-fair-hearing", "commercial-appeal-and-independent-review"]
    summary: NonEmpty
    steps: list[AppealStep] = Field(min_length=1)
    expedited: NonEmpty = Field(description="When and how a faster appeal is possible")


class MissingInformation(Strict):
    """What a notice pended for the office's answers or documents says
    beside what to send: by when (``days`` from the notice), and what the
    payer does if nothing comes by then."""

    days: int = Field(gt=0, le=90, description="Days from the notice to send what is asked")
    if_nothing: NonEmpty = Field(description="What the payer does if nothing comes by then")
    citation: str | None = Field(None, description="The law or rule, where one sets it")


class PharmacistApproval(Strict):
    """Sections of one policy a pharmacist approves on confirming them — the
    policy's "pass to RPh; approve" when X is confirmed: a request denied
    on them alone waits for a pharmacist, who may approve it citing them."""

    policy: NonEmpty = Field(description="The policy's id")
    sections: list[NonEmpty] = Field(min_length=1, description="Its criteria a pharmacist confirms")
    confirm: NonEmpty = Field(description="What the pharmacist confirms, in plain words")
    basis: NonEmpty = Field(description="Where the policy or the payer says so")


class ReviewRule(Strict):
    outcomes: list[Reviewable] = Field(
        description="Outcomes that are a pharmacist's recommendation, not a decision"
    )
    basis: NonEmpty = Field(description="Why: the rule or the payer's choice")
    approvals: list[PharmacistApproval] = Field(
        default_factory=list,
        description="Sections a pharmacist may approve on confirming them (pass to RPh; approve)",
    )

    def confirmable(self, policy: str) -> list[str]:
        """The sections of ``policy`` a pharmacist may approve by confirming them."""
        return [s for a in self.approvals if a.policy == policy for s in a.sections]


class PayerIdentifier(Strict):
    """An identifier of the payer as a member's Coverage names it
    (``Coverage.payor``): the system that issues it and the value."""

    system: Annotated[str, StringConstraints(pattern=r"^(https?://|urn:)\S+$")]
    value: NonEmpty

    def key(self) -> str:
        return f"{self.system}|{self.value}"


class PayerConfig(Strict):
    identifier: NonEmpty = Field(description="The policy files' payer.identifier")
    identifiers: list[PayerIdentifier] = Field(
        default_factory=list,
        description="How a Coverage names this payer (Coverage.payor identifier); the"
        " package selects this payer's forms for a Coverage naming one of them",
    )
    name: NonEmpty
    program: NonEmpty = Field(description="Medicaid, commercial HMO, ...")
    contact: Contact
    deadlines: Deadlines
    appeals: Appeals
    review: ReviewRule
    missing_information: MissingInformation | None = Field(
        None, description="By when a pend's answers or documents are due, and what if not"
    )
    time_zone: NonEmpty = Field(
        "UTC",
        description="The IANA time zone (America/Chicago) every time a person reads is shown"
        " in: notices, the review pages, the office's history; the JSON APIs keep UTC",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{name!r} is no IANA time zone name (as America/Chicago or UTC)"
            ) from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        """The payer's time zone (ZoneInfo keeps one instance per name)."""
        return ZoneInfo(self.time_zone)


class PayerConfigError(ValueError):
    def __init__(self, file: str, problems: list[str]) -> None:
        super().__init__(f"{file}: " + "; ".join(problems))
        self.file = file
        self.problems = problems


def load_payer(path: Path) -> PayerConfig:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise PayerConfigError(str(path), [f"cannot be read: {exc}"]) from None
    try:
        return PayerConfig.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()
        ]
        raise PayerConfigError(str(path), problems) from None


def load_payers(folder: Path) -> dict[str, PayerConfig]:
    """Every payer file of a folder (``{policies}/payers``), by identifier."""
    payers: dict[str, PayerConfig] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        payer = load_payer(path)
        if payer.identifier in payers:
            raise PayerConfigError(
                str(path), [f"identifier: {payer.identifier} is configured twice"]
            )
        payers[payer.identifier] = payer
    owners: dict[str, str] = {}
    for payer in payers.values():
        for identifier in payer.identifiers:
            other = owners.setdefault(identifier.key(), payer.identifier)
            if other != payer.identifier:
                raise PayerConfigError(
                    str(folder),
                    [
                        f"identifiers: {identifier.key()} names both {other} and"
                        f" {payer.identifier}: a Coverage naming it would select either's forms"
                    ],
                )
    return payers


def needs_review(payer: PayerConfig, determination: Determination) -> bool:
    """Whether the scorer's determination is only a recommendation for this
    payer: its outcome, ``review``, or ``modified`` (an approval whose
    quantity is cut to the limit) is one the payer lists; or a denial
    resting only on sections a pharmacist may approve by confirming them."""
    return recommendation_word(determination) in payer.review.outcomes or bool(
        for_confirmation(payer, determination)
    )


def for_confirmation(payer: PayerConfig, determination: Determination) -> list[str]:
    """The sections a denial rests on when a pharmacist may approve every
    one of them by confirming it (none otherwise): the request goes to a
    pharmacist, who approves when they are confirmed."""
    confirmable = payer.review.confirmable(determination.policy)
    if (
        determination.outcome != "denied"
        or determination.excluded
        or not determination.unmet
        or not set(determination.unmet) <= set(confirmable)
    ):
        return []
    return list(determination.unmet)


def approval_problems(payer: PayerConfig, sections: Mapping[str, Collection[str]]) -> list[str]:
    """What is wrong with the payer's pharmacist approvals against the
    policies (``sections``: each policy id's criteria): a policy or a section
    that does not exist would let no pharmacist approve anything."""
    problems = []
    for number, approval in enumerate(payer.review.approvals):
        where = f"review.approvals[{number}]"
        known = sections.get(approval.policy)
        if known is None:
            problems.append(f"{where}.policy: no policy {approval.policy} of this payer")
            continue
        problems += [
            f"{where}.sections: {section} is no criterion of {approval.policy}"
            for section in approval.sections
            if section not in known
        ]
    return problems
