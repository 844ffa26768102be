"""A policy's worked examples: answers in, the expected determination out.

No structural check sees a reversed comparison, ``18 months`` written for 18
years or an inverted test: they build and decide wrongly. The author's worked
examples, written from the policy text, do: each names a request, answers by
question name (a named answer set of the file, ``base``, with ``set`` and
``unset`` applied; partial answers allowed) and what the policy must decide —
outcome, cited sections, missing questions, the authorization's months and
end, quantities. They live beside the policy (``<stem>.examples.yaml`` next
to ``<stem>.yaml``), are checked against the built forms and run by the build
(:mod:`builder.verification.examples`, :mod:`qpackage.examples`).

The model is strict like the policy's (frozen, ``extra="forbid"``); what it
cannot know alone (question names, answer types, section ids) is checked
against the forms the policy builds.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.model import RequestKind

EXAMPLES_SUFFIX = ".examples.yaml"
# the sections an expectation cites, by the determination's field
SECTION_FIELDS = ("unmet", "missing", "investigational", "review", "excluded")

_STRICT = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Expected(BaseModel):
    """What the policy must decide. A section list not stated is expected
    empty; an approval states its months and end date (its start is the
    evaluation date unless stated); quantities and limits are compared when
    stated."""

    model_config = _STRICT

    outcome: Literal["approved", "denied", "investigational", "pended"]
    unmet: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    investigational: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    missing_questions: tuple[str, ...] = Field((), alias="missingQuestions")
    review_documents: tuple[str, ...] = Field((), alias="reviewDocuments")
    pend_reason: Literal["review", "missing-information"] | None = Field(None, alias="pendReason")
    months: int | None = None
    start: date | None = None
    end: date | None = None
    limits: tuple[int | float, ...] | None = None
    approved_quantity: int | float | None = Field(None, alias="approvedQuantity")
    requested_quantity: int | float | None = Field(None, alias="requestedQuantity")

    @model_validator(mode="after")
    def _approval_dated(self) -> Expected:
        if self.outcome == "approved" and not {"months", "end"} <= self.model_fields_set:
            raise ValueError("an approval must state its months and end date")
        return self

    def stated(self) -> dict[str, Any]:
        """The fields the example states, by their names in the file."""
        return self.model_dump(by_alias=True, exclude_unset=True)

    def sections(self) -> dict[str, tuple[str, ...]]:
        """The sections cited, by field."""
        return {name: getattr(self, name) for name in SECTION_FIELDS}


class Example(BaseModel):
    """One worked example: a request answered, and what it must decide."""

    model_config = _STRICT

    name: str = Field(min_length=1)
    request: RequestKind
    drug: str | None = None  # the drug's form, for a policy with one form per drug
    base: str  # a named answer set of the file, or ``none``
    changes: dict[str, Any] = Field(default_factory=dict, alias="set")
    unset: tuple[str, ...] = ()
    as_of: date | None = None  # the file's ``as_of`` when not given
    exercises: tuple[str, ...] = Field(min_length=1)  # the sections it is about
    expect: Expected


class Examples(BaseModel):
    """A policy's worked examples file."""

    model_config = _STRICT

    policy: str  # the policy's id
    as_of: date  # the evaluation date of every example not stating its own
    bases: dict[str, dict[str, Any]]
    cases: tuple[Example, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> Examples:
        seen: set[str] = set()
        for example in self.cases:
            if example.name in seen:
                raise ValueError(f"example {example.name!r}: name: used twice")
            seen.add(example.name)
            if example.base != "none" and example.base not in self.bases:
                raise ValueError(
                    f"example {example.name!r}: base: no answer set {example.base!r}"
                    f" in bases ({', '.join(sorted(self.bases))}, or none)"
                )
        return self

    def answers(self, example: Example) -> dict[str, Any]:
        """The example's answers by question name: its base, ``set`` applied,
        ``unset`` removed."""
        answers = {} if example.base == "none" else dict(self.bases[example.base])
        answers.update(example.changes)
        for name in example.unset:
            answers.pop(name, None)
        return answers

    def as_of_for(self, example: Example) -> date:
        return example.as_of or self.as_of


def examples_file(policy_file: Path) -> Path:
    """Where a policy file's examples are: ``<stem>.examples.yaml`` beside it."""
    return policy_file.with_name(policy_file.stem + EXAMPLES_SUFFIX)


def is_examples_file(path: Path) -> bool:
    return path.name.endswith(EXAMPLES_SUFFIX)
