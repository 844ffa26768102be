"""The policy data model: one payer drug policy, written once as data.

A policy file says who issued the policy, which drugs it covers, how long an
approval lasts, its quantity limits, and its criteria as a tree. Every
criterion carries its section id and policy text, the questions that capture
it, and the FHIRPath expression that decides it (its *scoring definition*).
The Questionnaire builder, the CQL-style definitions and the denial reasons
are all derived from this one tree, so a criterion is never written twice.

The models are strict (frozen, ``extra="forbid"``) so a typo in a policy file
is an error that names the field, not a silently ignored key.

A model checks the shape of each part; the rules across parts (unique ids,
references that resolve) are :mod:`policies.consistency`'s, which the loader
applies to every policy it reads.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from policies.generated import DOCUMENT_PREFIX

# Section ids: the policy's own numbering (``I.D.3``, ``II.C``), renewal
# criteria prefixed (``Renewal.IV``), or ids the data file assigns where the
# policy has none (``Melanoma.2``, ``Exclusion.1``, ``Renewal.Indication``):
# dotted parts, each a capitalised word (roman numerals and letters are words)
# or a number. The quantity limit is ``QL``. What stays out, and why: a part
# starting lower-case would read as a question's or a text's linkId
# (``{section}.{question}``, ``{section}.text``); a hyphen would make an any-of
# group's linkId (``A-or-B``) ambiguous; spaces and brackets would clash with
# the definitions named after a section (``"I.D (own)"``, ``"II.C applies"``);
# an empty part (``Renewal..IV``) names nothing.
SECTION_ID_PATTERN = r"^[A-Z][A-Za-z]*(\.([A-Z][A-Za-z]*|[0-9]+))*$"
# Question names are FHIRPath identifiers: scoring definitions refer to an
# answer as ``%name``.
QUESTION_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

SectionId = Annotated[str, StringConstraints(pattern=SECTION_ID_PATTERN)]
_PARTIAL_DATE = re.compile(r"^[0-9]{4}(-(0[1-9]|1[0-2]))?$")


def _policy_date(value: object) -> object:
    """A full date, or one known only to the month or year (as FHIR allows;
    YAML reads 2018-01 as text), with one clear message when it is neither."""
    if value is None or isinstance(value, dt.date):
        return value
    text = str(value)
    if _PARTIAL_DATE.match(text):
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: write YYYY-MM-DD, or YYYY-MM or YYYY where the policy"
            " gives only those"
        ) from None


PolicyDate = Annotated[dt.date | str, BeforeValidator(_policy_date)]
QuestionName = Annotated[str, StringConstraints(pattern=QUESTION_NAME_PATTERN)]
NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NDC = "http://hl7.org/fhir/sid/ndc"

_VARIABLE_RE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)")
# Variables the scoring engine itself supplies to every definition.
ENGINE_VARIABLES = frozenset({"as_of", "resource", "context", "ucum"})


class Strict(BaseModel):
    # defer_build: see the note after Node
    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, defer_build=True
    )


def _quote() -> Any:
    """A ``source_quote`` field: an excerpt of the policy's text that `dtr
    lint` finds in its source text (``source_text``). Left out of every dump
    (the policy's digest, the archive), so quoting a policy never changes what
    it builds or its released version."""
    return Field(
        None,
        exclude=True,
        description="An excerpt of the policy text this part rests on, as the source text"
        " words it (`dtr lint`)",
    )


Quote = NonEmpty | None


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
    date: PolicyDate | None = Field(
        None,
        description="The policy's date, as precise as the text gives it (2018-01 for 'January"
        " 2018'); left out when the text is undated — never invented",
    )
    canonical_base: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+[^/]$")]
    source: NonEmpty = Field(description="Where the policy text comes from")
    therapeutic_area: str | None = None

    @property
    def date_text(self) -> str | None:
        """The date as FHIR writes it (YYYY, YYYY-MM or YYYY-MM-DD), or None."""
        if self.date is None:
            return None
        return self.date if isinstance(self.date, str) else self.date.isoformat()

    @property
    def canonical(self) -> str:
        return f"{self.canonical_base}/policies/{self.id}"

    @property
    def sections_system(self) -> str:
        return f"{self.canonical}/sections"

    @property
    def codes_system(self) -> str:
        return f"{self.canonical}/codes"


Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class Drug(Strict):
    id: Slug | None = Field(
        None,
        description="Needed when a policy covers several drugs or regimens: each gets its own"
        " Questionnaires, and criteria and limits name the drugs they apply to",
    )
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


class BranchTerm(Strict):
    """A length that applies when one branch of the criteria (an indication) is met."""

    section: SectionId
    months: Annotated[int, Field(gt=0, le=60)]
    basis: str | None = None
    source_quote: Quote = _quote()


class BranchCap(Strict):
    """A cap on continued therapy that applies to the requests taking one
    branch of the criteria ("adjuvant: one renewal only")."""

    section: SectionId = Field(description="The branch: an alternative of a `logic: any`")
    max_renewals: Annotated[int, Field(ge=0)] | None = None
    max_total_months: Annotated[int, Field(gt=0)] | None = None
    source_quote: Quote = _quote()

    @model_validator(mode="after")
    def _caps_something(self) -> BranchCap:
        if self.max_renewals is None and self.max_total_months is None:
            raise ValueError("a branch cap gives `max_renewals`, `max_total_months` or both")
        return self


class AuthorizationTerm(Strict):
    months: Annotated[int, Field(gt=0, le=60)]
    assumed: bool = False
    basis: str | None = Field(None, description="Why this length applies when the policy is silent")
    branches: list[BranchTerm] = Field(
        default_factory=list,
        description="Lengths per branch (e.g. 6 months for adjuvant therapy); the shortest of"
        " the met branches applies",
    )
    lesser_of_planned: bool = Field(
        False,
        description="Approve the lesser of the planned length of therapy (asked) and the months",
    )
    max_renewals: Annotated[int, Field(ge=0)] | None = Field(
        None, description="A cap on the number of renewals (asked, or from the payer's history)"
    )
    max_total_months: Annotated[int, Field(gt=0)] | None = Field(
        None, description="A cap on the total time on therapy (the start of therapy is asked)"
    )
    source_quote: Quote = _quote()
    branch_caps: list[BranchCap] = Field(
        default_factory=list,
        description="Caps on renewals and on the total time on therapy for the requests taking"
        " one branch (an indication) only",
    )

    @model_validator(mode="after")
    def _assumed_needs_basis(self) -> AuthorizationTerm:
        if self.assumed and not self.basis:
            raise ValueError("an assumed authorization length must say its basis")
        return self


class Authorization(Strict):
    initial: AuthorizationTerm
    renewal: AuthorizationTerm

    def term(self, kind: RequestKind) -> AuthorizationTerm:
        return self.initial if kind == "initial" else self.renewal


class Coding(Strict):
    system: NonEmpty
    code: NonEmpty
    display: NonEmpty | None = None


def _answer_value(value: object) -> object:
    """An answer compared with (enable_when, a limit's `when`): one message for
    a value of none of its kinds, where the union would give one per kind."""
    if isinstance(value, bool | int | float | str | date):
        return value
    kind = {list: "a list", dict: "a mapping", type(None): "nothing (null)"}.get(
        type(value), type(value).__name__
    )
    raise ValueError(
        f"an answer is a truth value, a number, an option's code or a date, not {kind}"
    )


AnswerValue = Annotated[bool | int | float | str | date, BeforeValidator(_answer_value)]


EhrKind = Literal["birth_date", "condition", "observation", "medication", "specialty"]


class EhrSource(Strict):
    """Where an EHR holds a question's answer, so a DTR client can prefill it
    with the policy's generated CQL (``builder/prepopulation.py``).

    - ``birth_date``: the Patient's birth date (a date question);
    - ``condition``: a Condition coded with one of ``codes`` — a boolean
      question is answered *true*, a choice question with ``answer``;
    - ``observation``: an Observation coded with one of ``codes`` whose coded
      result is one of ``present`` (*true*) or ``absent`` (*false*);
    - ``medication``: a MedicationRequest or MedicationStatement of one of
      ``codes`` (*true*);
    - ``specialty``: the prescriber's PractitionerRole (the launch context
      ``user``) has one of ``codes`` as specialty (*true*), or has
      specialties and none of them (*false*).

    Absence of a record never answers *false*: the question is left to the
    prescriber."""

    kind: EhrKind
    codes: list[Coding] = Field(default_factory=list)
    present: list[Coding] = Field(default_factory=list)
    absent: list[Coding] = Field(default_factory=list)
    answer: str | None = Field(None, description="The option a match gives (choice questions)")

    @model_validator(mode="after")
    def _fits_kind(self) -> EhrSource:
        if self.kind == "birth_date":
            if self.codes or self.present or self.absent or self.answer:
                raise ValueError("a birth_date source takes no codes and no answer")
            return self
        if not self.codes:
            raise ValueError(f"a {self.kind} source needs the codes it looks for")
        if self.kind != "observation" and (self.present or self.absent):
            raise ValueError("only an observation source has present / absent results")
        if self.kind == "observation" and not (self.present or self.absent):
            raise ValueError("an observation source needs the results meaning present or absent")
        if self.answer is not None and self.kind != "condition":
            raise ValueError("only a condition source answers a choice question")
        for coding in (*self.codes, *self.present, *self.absent):
            if not coding.system.startswith(("http://", "https://", "urn:")):
                raise ValueError(f"code {coding.code}: its system must be a URI")
        return self


class Condition(Strict):
    """One enableWhen condition: the answer to ``question`` compared with ``answer``."""

    question: QuestionName
    operator: Literal["=", "!=", ">", "<", ">=", "<=", "exists"] = "="
    answer: AnswerValue


class DailyDose(Strict):
    """A dose limit per day, turned into units per period by the strength of one unit."""

    amount: Annotated[float, Field(gt=0)]
    unit: NonEmpty = "mg"
    strength: Annotated[float, Field(gt=0)] = Field(description="The amount in one unit (tablet)")

    @property
    def units_per_day(self) -> float:
        return self.amount / self.strength


class QuantityLimit(Strict):
    """One limit: a quantity per period, written as units per period
    (``quantity``), units per day (``per_day``) or a daily dose (``daily_dose``);
    for one product (``code``), drug (``drug``) or indication (``when``)."""

    product: NonEmpty
    code: Coding | None = Field(None, description="The product's code, when the request names it")
    drug: Slug | None = Field(None, description="The drug (id) this limit applies to")
    when: list[Condition] = Field(
        default_factory=list, description="Applies only when these answers hold (an indication)"
    )
    quantity: Annotated[int, Field(gt=0)] | None = None
    per_day: Annotated[float, Field(gt=0)] | None = None
    daily_dose: DailyDose | None = None
    unit: NonEmpty
    period_days: Annotated[int, Field(gt=0)]
    source_quote: Quote = _quote()

    @model_validator(mode="after")
    def _one_limit(self) -> QuantityLimit:
        given = [x for x in (self.quantity, self.per_day, self.daily_dose) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `quantity`, `per_day` and `daily_dose`")
        if self.quantity is None and self.max_units < 1:
            raise ValueError("the limit comes to less than one unit per period")
        return self

    @property
    def max_units(self) -> int:
        """Units per period (a daily limit times the period, rounded down)."""
        if self.quantity is not None:
            return self.quantity
        per_day = self.per_day if self.per_day is not None else self.daily_dose.units_per_day  # type: ignore[union-attr]
        return int(per_day * self.period_days + 1e-9)


class QuantityLimits(Strict):
    id: Literal["QL"] = "QL"
    text: NonEmpty
    limits: Annotated[list[QuantityLimit], Field(min_length=1)]
    over_limit: Literal["deny", "modify"] = Field(
        "deny",
        description="A request above the limit is denied, or approved modified to the limit",
    )
    over_dose: Literal["deny", "review"] | None = Field(
        None,
        description="A prescribed daily dose above a `daily_dose` limit is denied, or pended"
        " for a pharmacist's review (with `over_limit: modify`); a dose is never modified,"
        " and one of 0 or below pends for the dose. Required with a daily-dose limit (`dtr"
        " check`); policy versions released before it keep the rules they were built with",
    )
    ruling: str | None = None
    source_quote: Quote = _quote()

    @model_validator(mode="after")
    def _period(self) -> QuantityLimits:
        periods = {limit.period_days for limit in self.limits}
        if len(periods) != 1:
            raise ValueError("all quantity limits of one policy must share one period")
        if self.over_dose is not None and not any(
            limit.daily_dose is not None for limit in self.limits
        ):
            raise ValueError("over_dose: no limit is a `daily_dose`")
        if self.over_dose == "review" and self.over_limit != "modify":
            # QL is one section, denied or reviewed when not met: with
            # `over_limit: deny` a dose above the limit is denied with it
            raise ValueError(
                "over_dose: review needs `over_limit: modify` (with `deny`, QL denies a"
                " request above the quantity or the dose alike)"
            )
        return self


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
    above: float | None = Field(
        None,
        description="An answer must be greater than this: one at or below it is a data error"
        " that counts as unanswered (the request pends naming the question), never a refusal",
    )
    help: str | None = None
    format: Literal["icd-10-cm"] | None = Field(
        None,
        description="The answer is a code, its format checked when a response is received:"
        " `icd-10-cm` (string questions); a malformed code is refused as input, never a"
        " denial",
    )
    repeats: bool = Field(False, description="A multi-select question (choice only)")
    signature_required: bool = Field(
        False,
        description="An attestation the prescriber signs (boolean questions): the form says so"
        " (`questionnaire-signatureRequired`), and an answer without a signature on its item"
        " (`questionnaireresponse-signature`) counts as unanswered, so the request pends",
    )
    record_only: bool = Field(
        False, description="Captured for the reviewer; no criterion reads it, it decides nothing"
    )
    ehr: list[EhrSource] = Field(
        default_factory=list,
        description="Where an EHR holds the answer: prefilled by the DTR client with CQL",
    )
    prefill: Literal["plan_approval"] | None = Field(
        None,
        description=(
            "What the payer answers itself in the draft response: `plan_approval` — true"
            " when this plan holds an approval of this policy for the member (boolean"
            " questions); left unanswered otherwise, never false"
        ),
    )

    @property
    def is_required(self) -> bool:
        if self.record_only or self.type == "attachment":
            return False if self.required is None else self.required
        return True if self.required is None else self.required

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
        if self.format is not None and self.type != "string":
            raise ValueError(f"a {self.type} question cannot have a `format` (string only)")
        if self.signature_required and self.type != "boolean":
            raise ValueError(
                f"a {self.type} question cannot require a signature (an attestation: boolean only)"
            )
        if self.above is not None and self.type not in ("integer", "decimal"):
            raise ValueError("only integer and decimal questions have `above`")
        if self.above is not None and self.min_value is not None:
            # minValue refuses the response (422); `above` pends it: one rule per question
            raise ValueError("give `above` or `min_value`, not both")
        if self.repeats and self.type != "choice":
            raise ValueError("only choice questions can repeat (multi-select)")
        if self.record_only and self.required:
            raise ValueError("a record-only question cannot be required")
        if self.prefill == "plan_approval" and self.type != "boolean":
            raise ValueError("prefill plan_approval answers a boolean question")
        for source in self.ehr:
            fits = {
                "birth_date": self.type == "date",
                "condition": self.type in ("boolean", "choice"),
            }.get(source.kind, self.type == "boolean")
            if not fits:
                raise ValueError(
                    f"an ehr source of kind {source.kind} cannot answer a {self.type} question"
                )
            if self.type == "choice" and source.answer is None:
                raise ValueError("ehr: a condition answering a choice question names its answer")
        if len(self.ehr) > 1 and self.type != "choice":
            raise ValueError("ehr: one source per question (several only for a choice question)")
        return self


class Documentation(Strict):
    """A document a criterion needs (a test result, chart notes). When
    ``required``, the criterion is met only with the document attached: a "yes"
    with nothing attached pends for it, naming it. When ``review``, what the
    document says decides, and only a person can read it: a request that would
    be approved on the criterion pends for a pharmacist's review, naming the
    document."""

    document: NonEmpty
    required: bool = True
    review: bool = Field(
        False,
        description="A pharmacist reads the document before any approval that rests on it",
    )

    @model_validator(mode="after")
    def _review_needs_document(self) -> Documentation:
        if self.review and not self.required:
            raise ValueError(
                "review: a document a pharmacist must read needs `required: true` (an approval"
                " could otherwise rest on the criterion without it)"
            )
        return self


class Derived(Strict):
    """A value computed from several answers by the scoring definitions
    (server-side): a lab value against its limit of normal, a time since a
    therapy, dose arithmetic. Criteria read it as ``%name``; the form asks only
    for the raw values."""

    name: QuestionName
    type: Literal["boolean", "integer", "decimal", "date", "string"]
    text: NonEmpty
    expression: NonEmpty


class Criterion(Strict):
    """A policy section and how it is decided.

    ``met`` is a FHIRPath expression over the answers (``%name``); it is the
    criterion's own condition. Child criteria are combined by ``logic`` (all or
    any), and the result is combined with ``met`` by ``combine``. A criterion
    whose group is disabled (``enable_when``) does not apply.
    """

    id: SectionId
    text: NonEmpty
    kind: Literal["criterion", "exclusion", "attestation", "information", "route"] = Field(
        "criterion",
        description="`information`: gathers what a determination needs; unknown until"
        " answered, never unmet. `route`: a yes/no step of a routing chain (emergency? →"
        " continuation? → ...): met, it approves its way; not met, it only sends the request"
        " on, and the criteria it sends it to are cited in its place",
    )
    questions: list[Question] = Field(default_factory=list)
    met: str | None = None
    enable_when: list[Condition] = Field(default_factory=list)
    enable_behavior: Literal["all", "any"] = "all"
    enable_when_expression: NonEmpty | None = Field(
        None,
        description="Instead of `enable_when`: a FHIRPath condition over answers (`%name`) that"
        " enableWhen cannot state (a value derived from two answers, a date computed from one);"
        " the criterion applies when it is true. It becomes SDC `enableWhenExpression` on its"
        " group, with a `variable` per question it reads",
    )
    children: list[Node] = Field(default_factory=list)
    children_enable_when: list[Condition] = Field(
        default_factory=list, description="Conditions applied to every child criterion's group"
    )
    logic: Literal["all", "any"] = "all"
    combine: Literal["and", "or"] = "and"
    include: Literal["initial"] | None = Field(
        None, description="Take the children from the initial criteria (renewal via samples)"
    )
    documentation: Documentation | None = None
    on_unmet: Literal["deny", "review"] = Field(
        "deny",
        description="`review`: when not met, a pharmacist decides (pended for review), not the"
        " algorithm",
    )
    drugs: list[Slug] = Field(
        default_factory=list, description="Applies only to these drugs or regimens (ids)"
    )
    cites: list[SectionId] = Field(
        default_factory=list,
        description="Sections cited with this one when it is not met (or referred for review):"
        " the policy text it rests on",
    )
    ruling: str | None = Field(None, description="How an ambiguity of the policy text was read")
    source_quote: Quote = _quote()
    unquoted: NonEmpty | None = Field(
        None,
        exclude=True,
        description="Instead of `source_quote`, why no words of the policy text state this"
        " criterion (one the file adds by its ruling, a default the text leaves unsaid):"
        " `dtr lint` lists it with the acknowledgements",
    )

    @model_validator(mode="after")
    def _decidable(self) -> Criterion:
        if self.unquoted is not None and self.source_quote is not None:
            raise ValueError(
                f"criterion {self.id}: `unquoted` says why no text is quoted: not with a"
                " `source_quote`"
            )
        if self.met is None and not self.children and self.include is None:
            raise ValueError(f"criterion {self.id} has neither `met` nor children")
        if self.include is not None and self.children:
            raise ValueError(f"criterion {self.id}: `include` and `children` exclude each other")
        if self.combine == "or" and self.met is None:
            raise ValueError(f"criterion {self.id}: `combine: or` needs a `met` expression")
        if self.enable_when_expression is not None and self.enable_when:
            raise ValueError(
                f"criterion {self.id}: `enable_when_expression` and `enable_when` exclude each"
                " other (SDC: an item has enableWhen or enableWhenExpression, not both)"
            )
        if self.kind == "route" and self.met is None:
            raise ValueError(f"criterion {self.id}: `kind: route` needs its own `met`")
        if self.logic == "all":
            _check_routes(self.children)
        return self

    @property
    def routes_on(self) -> bool:
        """A route whose own condition, not met, sends the request on to its
        children (``combine: or``)."""
        return self.kind == "route" and self.combine == "or" and bool(self.children or self.include)


def _check_routes(nodes: list[Node]) -> None:
    """A route not met sends the request on to another way of approving it:
    an alternative beside it (an any-group) or its own children (``combine:
    or``). Among criteria that must all be met it would send it nowhere, and
    a denial would cite no reason for it."""
    for node in nodes:
        if isinstance(node, Criterion) and node.kind == "route" and not node.routes_on:
            raise ValueError(
                f"criterion {node.id}: `kind: route` sends a request on only as an alternative"
                " (in `any_of` or among `logic: any` children) or to its own children"
                " (`combine: or`), not among criteria that must all be met"
            )


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
# No Criterion.model_rebuild() here: the models' schemas are built when a
# policy is first validated (defer_build), the forward reference to Node
# resolved then, so that reading back a cached catalog (qpackage.cache),
# which validates nothing, does not pay for building them.


class InvestigationalCondition(Strict):
    id: SectionId
    text: NonEmpty
    answer_of: QuestionName | None = Field(
        None, description="Offered as an answer option of this (choice) question"
    )
    display: str | None = Field(None, description="The option's label, when not `text`")
    applies: str | None = Field(None, description="FHIRPath: true when the condition applies")
    source_quote: Quote = _quote()

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
    source_quote: Quote = _quote()

    def all_conditions(self) -> list[InvestigationalCondition]:
        return [*self.conditions, *([self.other] if self.other else [])]


class RequestCriteria(Strict):
    title: NonEmpty
    text: NonEmpty | None = None
    criteria: Annotated[list[Node], Field(min_length=1)]
    ruling: str | None = None
    assumed: bool = Field(
        False, description="The policy states no such criteria; a payer default applies"
    )
    basis: str | None = Field(None, description="Which default applies, and why")

    @model_validator(mode="after")
    def _assumed_needs_basis(self) -> RequestCriteria:
        if self.assumed and not self.basis:
            raise ValueError("assumed criteria must say their basis")
        _check_routes(self.criteria)
        return self


class Acknowledged(Strict):
    """Text of the source's criteria part that no part of the policy quotes, and why."""

    text: NonEmpty = Field(description="An excerpt of the source text, as `source_quote` is")
    reason: NonEmpty


class SourceText(Strict):
    """The plain-text copy of the policy's own words that `dtr lint` checks the
    data against, and which part of it holds the criteria."""

    file: NonEmpty = Field(description="The text file, relative to the policy file")
    criteria_start: NonEmpty = Field(
        description="An excerpt where the criteria part begins (e.g. its heading)"
    )
    criteria_end: NonEmpty | None = Field(
        None,
        description="An excerpt where the criteria part ends (the heading after it, not"
        " linted); the end of the text when left out",
    )
    acknowledged: list[Acknowledged] = Field(
        default_factory=list,
        description="Text of the criteria part no part of the policy quotes, each with its reason",
    )


class Policy(Strict):
    policy: PolicyIdentity
    drugs: Annotated[list[Drug], Field(min_length=1)]
    authorization: Authorization
    quantity_limits: QuantityLimits | None = None
    derived: list[Derived] = Field(default_factory=list)
    initial: RequestCriteria
    renewal: RequestCriteria
    investigational: Investigational | None = None
    source_text: SourceText | None = Field(
        None,
        exclude=True,
        description="The policy's own words, kept beside it, that `dtr lint` checks the data"
        " against; left out of every dump, like `source_quote`",
    )

    @property
    def id(self) -> str:
        return self.policy.id

    @property
    def per_drug(self) -> bool:
        """A policy of several drugs or regimens builds Questionnaires per drug."""
        return len(self.drugs) > 1

    def drug(self, drug_id: str | None) -> Drug:
        if drug_id is None:
            return self.drugs[0]
        return next(d for d in self.drugs if d.id == drug_id)

    def forms(self) -> list[tuple[RequestKind, str | None]]:
        """Every (request kind, drug id) that gets a Questionnaire, in order."""
        drugs: list[str | None] = [d.id for d in self.drugs] if self.per_drug else [None]
        return [(kind, drug) for drug in drugs for kind in REQUEST_KINDS]

    def request(self, kind: RequestKind) -> RequestCriteria:
        return self.initial if kind == "initial" else self.renewal


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


def form_criteria(policy: Policy, kind: RequestKind, drug: str | None) -> Iterator[Criterion]:
    """The policy's criteria one form (request kind, drug) asks: those that
    apply to the drug, a renewal's ``include: initial`` taking the initial
    ones — what the builder's request tree holds besides its generated
    sections. The checks below need it before anything is built."""

    def visit(nodes: list[Node]) -> Iterator[Criterion]:
        for node in nodes:
            if isinstance(node, AnyOf):
                yield from visit(list(node.any_of))
            elif drug is None or not node.drugs or drug in node.drugs:
                yield node
                yield from visit(policy.initial.criteria if node.include else node.children)

    return visit(policy.request(kind).criteria)


def _asked(
    policy: Policy, kind: RequestKind, drug: str | None
) -> Iterator[tuple[Question, str | None]]:
    """Each question one form asks, with the first condition under which it is
    asked (``SECTION: field``), None when it is asked on every request."""

    def visit(nodes: list[Node], guard: str | None) -> Iterator[tuple[Question, str | None]]:
        for node in nodes:
            if isinstance(node, AnyOf):
                yield from visit(list(node.any_of), guard)
                continue
            if drug is not None and node.drugs and drug not in node.drugs:
                continue
            own = guard or (
                f"{node.id}: enable_when"
                if node.enable_when
                else f"{node.id}: enable_when_expression"
                if node.enable_when_expression
                else None
            )
            for question in node.questions:
                asked = own or (
                    f"{node.id}: questions: {question.name}: enable_when"
                    if question.enable_when
                    else None
                )
                yield question, asked
            below = own or (
                f"{node.id}: children_enable_when" if node.children_enable_when else None
            )
            yield from visit(policy.initial.criteria if node.include else node.children, below)

    return visit(policy.request(kind).criteria, None)


def asked_always(policy: Policy, kind: RequestKind, drug: str | None) -> set[str]:
    """The questions a form asks on every request, whatever the answers."""
    return {question.name for question, guard in _asked(policy, kind, drug) if guard is None}


def always_why(policy: Policy, kind: RequestKind, drug: str | None, name: str) -> str | None:
    """The condition under which a form asks a question only on some answers
    (``SECTION: field``); None when the form does not ask it."""
    return next(
        (guard for question, guard in _asked(policy, kind, drug) if question.name == name),
        None,
    )


def expression_variables(expression: str) -> set[str]:
    """The ``%name`` variables an expression reads (strings are not parsed out:
    question names never appear inside FHIRPath string literals here)."""
    return set(_VARIABLE_RE.findall(expression)) - ENGINE_VARIABLES


def document_question(criterion: Criterion) -> str:
    """The generated attachment question of a criterion's documentation."""
    return DOCUMENT_PREFIX + re.sub(r"[^a-z0-9]+", "_", criterion.id.lower()).strip("_")
