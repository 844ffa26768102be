"""The policy data model: one payer drug policy, written once as data.

A policy file says who issued the policy, which drugs it covers, how long an
approval lasts, its quantity limits, and its criteria as a tree. Every
criterion carries its section id and policy text, the questions that capture
it, and the FHIRPath expression that decides it (its *scoring definition*).
The Questionnaire builder, the CQL-style definitions and the denial reasons
are all derived from this one tree, so a criterion is never written twice.

The models are strict (frozen, ``extra="forbid"``) so a typo in a policy file
is an error that names the field, not a silently ignored key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

# Section ids: the policy's own numbering (``I.D.3``, ``II.C``), renewal
# criteria prefixed (``Renewal.IV``), or ids the data file assigns where the
# policy has none (``Melanoma.2``, ``Exclusion.1``). The quantity limit is ``QL``.
SECTION_ID_PATTERN = r"^[A-Z][A-Za-z]*(\.([A-Z]+|[0-9]+))*$"
# Question names are FHIRPath identifiers: scoring definitions refer to an
# answer as ``%name``.
QUESTION_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

SectionId = Annotated[str, StringConstraints(pattern=SECTION_ID_PATTERN)]
QuestionName = Annotated[str, StringConstraints(pattern=QUESTION_NAME_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"

_VARIABLE_RE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)")
# Variables the scoring engine itself supplies to every definition.
ENGINE_VARIABLES = frozenset({"as_of", "resource", "context", "ucum"})


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Payer(Strict):
    name: NonEmpty
    identifier: NonEmpty
    url: str | None = None


class PolicyIdentity(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    number: str | None = Field(None, description="The payer's policy number, where it has one")
    title: NonEmpty
    type: Literal["PA", "SP", "PA/SP"]
    payer: Payer
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)*$")]
    date: date
    canonical_base: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+[^/]$")]
    source: NonEmpty = Field(description="Where the policy text comes from")
    therapeutic_area: str | None = None

    @property
    def canonical(self) -> str:
        return f"{self.canonical_base}/policies/{self.id}"

    @property
    def sections_system(self) -> str:
        return f"{self.canonical}/sections"

    @property
    def codes_system(self) -> str:
        return f"{self.canonical}/codes"


class Drug(Strict):
    name: NonEmpty
    names: list[NonEmpty] = Field(
        default_factory=list, description="Brand and generic names an order may carry as text"
    )
    rxnorm: list[Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]] = Field(
        default_factory=list
    )
    ndc: list[
        Annotated[str, StringConstraints(pattern=r"^[0-9]{4,5}-[0-9]{3,4}(-[0-9]{1,2})?$")]
    ] = Field(default_factory=list)
    note: str | None = None


class AuthorizationTerm(Strict):
    months: Annotated[int, Field(gt=0, le=60)]
    assumed: bool = False
    basis: str | None = Field(None, description="Why this length applies when the policy is silent")

    @model_validator(mode="after")
    def _assumed_needs_basis(self) -> AuthorizationTerm:
        if self.assumed and not self.basis:
            raise ValueError("an assumed authorization length must say its basis")
        return self


class Authorization(Strict):
    initial: AuthorizationTerm
    renewal: AuthorizationTerm


class Coding(Strict):
    system: NonEmpty
    code: NonEmpty
    display: NonEmpty | None = None


class QuantityLimit(Strict):
    product: NonEmpty
    code: Coding | None = Field(None, description="The product's code, when the request names it")
    quantity: Annotated[int, Field(gt=0)]
    unit: NonEmpty
    period_days: Annotated[int, Field(gt=0)]


class QuantityLimits(Strict):
    id: Literal["QL"] = "QL"
    text: NonEmpty
    limits: Annotated[list[QuantityLimit], Field(min_length=1)]
    over_limit: Literal["deny"] = Field(
        "deny", description="What a request above the limit gets (a ruling of the policy data)"
    )
    ruling: str | None = None

    @model_validator(mode="after")
    def _period_and_products(self) -> QuantityLimits:
        periods = {limit.period_days for limit in self.limits}
        if len(periods) != 1:
            raise ValueError("all quantity limits of one policy must share one period")
        if len(self.limits) > 1 and any(limit.code is None for limit in self.limits):
            raise ValueError("with several limits, each product needs a code to be chosen by")
        return self


AnswerValue = bool | int | float | str | date


class Condition(Strict):
    """One enableWhen condition: the answer to ``question`` compared with ``answer``."""

    question: QuestionName
    operator: Literal["=", "!=", ">", "<", ">=", "<=", "exists"] = "="
    answer: AnswerValue


class Option(Strict):
    """An answer option: a policy section (coded in the sections system) or a
    code of its own (SNOMED CT, LOINC, RxNorm, or the policy's code system)."""

    display: NonEmpty
    section: SectionId | None = Field(None, description="The section this answer stands for")
    code: NonEmpty | None = None
    system: str | None = Field(
        None, description="Defaults to the policy's own code system ({canonical}/codes)"
    )

    @model_validator(mode="after")
    def _one_code(self) -> Option:
        if (self.section is None) == (self.code is None):
            raise ValueError("an option has exactly one of `section` and `code`")
        if self.section is not None and self.system is not None:
            raise ValueError("a section option is coded in the policy's sections system")
        return self

    @property
    def key(self) -> str:
        """The code that conditions and definitions compare answers with."""
        return self.section or self.code or ""


QuestionType = Literal[
    "boolean", "choice", "integer", "decimal", "date", "string", "text", "attachment"
]


class Question(Strict):
    name: QuestionName
    type: QuestionType
    text: NonEmpty
    required: bool | None = Field(None, description="Defaults to true except for attachments")
    options: list[Option] = Field(default_factory=list)
    enable_when: list[Condition] = Field(default_factory=list)
    enable_behavior: Literal["all", "any"] = "all"
    unit: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    help: str | None = None

    @property
    def is_required(self) -> bool:
        return self.type != "attachment" if self.required is None else self.required

    @model_validator(mode="after")
    def _options_fit_type(self) -> Question:
        if self.type == "choice" and not self.options:
            raise ValueError("a choice question needs options")
        if self.type != "choice" and self.options:
            raise ValueError(f"a {self.type} question cannot have options")
        codes = [o.key for o in self.options]
        if len(codes) != len(set(codes)):
            raise ValueError("option codes must be unique")
        if self.unit is not None and self.type not in ("integer", "decimal"):
            raise ValueError("only integer and decimal questions have a unit")
        return self


class Criterion(Strict):
    """A policy section and how it is decided.

    ``met`` is a FHIRPath expression over the answers (``%name``); it is the
    criterion's own condition. Child criteria are combined by ``logic`` (all or
    any), and the result is combined with ``met`` by ``combine``. A criterion
    whose group is disabled (``enable_when``) does not apply.
    """

    id: SectionId
    text: NonEmpty
    kind: Literal["criterion", "exclusion", "attestation"] = "criterion"
    questions: list[Question] = Field(default_factory=list)
    met: str | None = None
    enable_when: list[Condition] = Field(default_factory=list)
    enable_behavior: Literal["all", "any"] = "all"
    children: list[Node] = Field(default_factory=list)
    children_enable_when: list[Condition] = Field(
        default_factory=list, description="Conditions applied to every child criterion's group"
    )
    logic: Literal["all", "any"] = "all"
    combine: Literal["and", "or"] = "and"
    include: Literal["initial"] | None = Field(
        None, description="Take the children from the initial criteria (renewal via samples)"
    )
    documentation: str | None = Field(None, description="Label of an optional attachment item")
    ruling: str | None = Field(None, description="How an ambiguity of the policy text was read")

    @model_validator(mode="after")
    def _decidable(self) -> Criterion:
        if self.met is None and not self.children and self.include is None:
            raise ValueError(f"criterion {self.id} has neither `met` nor children")
        if self.include is not None and self.children:
            raise ValueError(f"criterion {self.id}: `include` and `children` exclude each other")
        if self.combine == "or" and self.met is None:
            raise ValueError(f"criterion {self.id}: `combine: or` needs a `met` expression")
        return self


class AnyOf(Strict):
    """Criteria of which one suffices (``Renewal.IV OR Renewal.V``)."""

    any_of: Annotated[list[Criterion], Field(min_length=2)]

    @property
    def label(self) -> str:
        return " or ".join(c.id for c in self.any_of)

    @property
    def link_id(self) -> str:
        """The linkId of the group that asks these criteria together."""
        return "-or-".join(c.id for c in self.any_of)


def _node_kind(value: object) -> str:
    if isinstance(value, dict):
        return "any_of" if "any_of" in value else "criterion"
    return "any_of" if isinstance(value, AnyOf) else "criterion"


# A tagged union, so that an error inside a criterion is reported once, at its
# own path, instead of once per union member.
Node = Annotated[
    Annotated[Criterion, Tag("criterion")] | Annotated[AnyOf, Tag("any_of")],
    Discriminator(_node_kind),
]
Criterion.model_rebuild()


class InvestigationalCondition(Strict):
    id: SectionId
    text: NonEmpty
    answer_of: QuestionName | None = Field(
        None, description="Offered as an answer option of this (choice) question"
    )
    display: str | None = Field(None, description="The option's label, when not `text`")
    applies: str | None = Field(None, description="FHIRPath: true when the condition applies")

    @model_validator(mode="after")
    def _one_way(self) -> InvestigationalCondition:
        if (self.answer_of is None) == (self.applies is None):
            raise ValueError(f"{self.id}: give exactly one of `answer_of` and `applies`")
        return self


class Investigational(Strict):
    id: SectionId
    text: NonEmpty
    conditions: list[InvestigationalCondition]
    other: InvestigationalCondition | None = Field(
        None, description="The catch-all ('all other conditions'), cited with the list's own id"
    )

    def all_conditions(self) -> list[InvestigationalCondition]:
        return [*self.conditions, *([self.other] if self.other else [])]


class RequestCriteria(Strict):
    title: NonEmpty
    text: NonEmpty | None = None
    criteria: Annotated[list[Node], Field(min_length=1)]
    ruling: str | None = None


class Policy(Strict):
    policy: PolicyIdentity
    drugs: Annotated[list[Drug], Field(min_length=1)]
    authorization: Authorization
    quantity_limits: QuantityLimits
    initial: RequestCriteria
    renewal: RequestCriteria
    investigational: Investigational | None = None

    @property
    def id(self) -> str:
        return self.policy.id

    def request(self, kind: RequestKind) -> RequestCriteria:
        return self.initial if kind == "initial" else self.renewal

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        _check_policy(self)
        return self


RequestKind = Literal["initial", "renewal"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("initial", "renewal")


def walk(nodes: list[Node]) -> Iterator[Criterion]:
    """Every criterion of a tree, depth first, in document order."""
    for node in nodes:
        if isinstance(node, AnyOf):
            yield from walk(list(node.any_of))
        else:
            yield node
            yield from walk(node.children)


def expression_variables(expression: str) -> set[str]:
    """The ``%name`` variables an expression reads (strings are not parsed out:
    question names never appear inside FHIRPath string literals here)."""
    return set(_VARIABLE_RE.findall(expression)) - ENGINE_VARIABLES


def _check_policy(policy: Policy) -> None:
    """Cross-field rules a schema cannot state: unique ids and names, and every
    reference (``%name``, enable_when, answer_of) resolving to a question."""
    questions: dict[str, Question] = {}
    sections: set[str] = {policy.quantity_limits.id}

    def add_section(section: str) -> None:
        if section in sections:
            raise ValueError(f"section id {section} is used twice")
        sections.add(section)

    trees = {kind: policy.request(kind).criteria for kind in REQUEST_KINDS}
    for kind, tree in trees.items():
        for criterion in walk(tree):
            if criterion.include == "initial" and kind != "renewal":
                raise ValueError(
                    f"{criterion.id}: only renewal criteria may include the initial ones"
                )
            add_section(criterion.id)
            for question in criterion.questions:
                if question.name in questions:
                    raise ValueError(f"question name {question.name} is used twice")
                questions[question.name] = question
    if policy.investigational:
        add_section(policy.investigational.id)
        for condition in policy.investigational.conditions:
            add_section(condition.id)

    extra_options: dict[str, set[str]] = {}
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            if condition.answer_of:
                extra_options.setdefault(condition.answer_of, set()).add(condition.id)

    def option_codes(question: Question) -> set[str]:
        return {o.key for o in question.options} | extra_options.get(question.name, set())

    def check_conditions(where: str, conditions: list[Condition]) -> None:
        for condition in conditions:
            target = questions.get(condition.question)
            if target is None:
                raise ValueError(
                    f"{where}: enable_when names unknown question {condition.question}"
                )
            _check_condition_fits(where, condition, target, option_codes(target))

    def check_expression(where: str, expression: str | None) -> None:
        if expression is None:
            return
        unknown = expression_variables(expression) - questions.keys()
        if unknown:
            raise ValueError(f"{where}: expression reads unknown question(s) {sorted(unknown)}")

    for kind, tree in trees.items():
        for criterion in walk(tree):
            check_expression(criterion.id, criterion.met)
            check_conditions(criterion.id, criterion.enable_when)
            check_conditions(criterion.id, criterion.children_enable_when)
            for question in criterion.questions:
                check_conditions(f"{criterion.id}/{question.name}", question.enable_when)
        del kind
    if policy.investigational:
        for condition in policy.investigational.all_conditions():
            check_expression(condition.id, condition.applies)
            if condition.answer_of is not None:
                target = questions.get(condition.answer_of)
                if target is None or target.type != "choice":
                    raise ValueError(f"{condition.id}: answer_of must name a choice question")


def _check_condition_fits(
    where: str, condition: Condition, target: Question, option_codes: set[str]
) -> None:
    answer = condition.answer
    if condition.operator == "exists":
        if not isinstance(answer, bool):
            raise ValueError(f"{where}: `exists` takes true or false")
        return
    expected: dict[str, tuple[type, ...]] = {
        "boolean": (bool,),
        "integer": (int,),
        "decimal": (int, float),
        "date": (date,),
        "string": (str,),
        "text": (str,),
        "choice": (str,),
    }
    allowed = expected.get(target.type)
    if allowed is None:
        raise ValueError(f"{where}: cannot compare the answer of a {target.type} question")
    if isinstance(answer, bool) and bool not in allowed:
        raise ValueError(f"{where}: {condition.question} is {target.type}, not boolean")
    if not isinstance(answer, allowed):
        raise ValueError(
            f"{where}: answer {answer!r} does not fit {target.type} question {target.name}"
        )
    if target.type in ("boolean", "choice") and condition.operator not in ("=", "!="):
        raise ValueError(f"{where}: {target.type} answers compare only with = or !=")
    if target.type == "choice" and answer not in option_codes:
        raise ValueError(f"{where}: {answer!r} is not an option of {target.name}")
