"""What an EHR record already shows of a policy: its prefillable questions
answered from the record, and its criteria evaluated three-valued on those
answers alone (Coverage Requirements Discovery, before any form is opened).

The record is what a CDS Hooks client prefetched (:class:`Record`, built by
:meth:`Record.from_prefetch`); :func:`prefetch_templates` gives the prefetch
templates the policies' ``ehr`` sources need, so a discovery document is
derived from the policies. :func:`evaluate_record` then:

- answers each question of the form that names an ``ehr`` source, with the
  semantics of the prepopulation CQL generated from the same sources
  (``builder/prepopulation.py``; a differential test runs both on the same
  records): the same codes and statuses, and absence never answers *false* —
  only an Observation's *absent* result, or a prescriber whose specialties are
  all others, does. A search the client did not fetch answers nothing (it is
  unknown, never "none found"); a search fetched empty (``null``) found none;
- evaluates the form's criteria with the scorer's own definitions
  (:meth:`cql_like.engine.CompiledRequest.evaluate`), the prefilled answers
  being the only answers: each section applying to the request is ``met``,
  ``not-met`` (decided from the record alone) or ``open``, with what it
  still needs — the prescriber's answers (by their text), a document, a
  pharmacist's review. Unanswered questions make a section unknown, so it is
  open, never not met.

A section whose group is disabled only because the question enabling it is
unanswered (EOCCO329 I.D.2 until the diagnosis is given) is open too, needing
that question; what the record would make of it once it applies is in
``if_applies``. A section the prefilled answers make inapplicable is left out.
An investigational use the record shows (a Condition answering the diagnosis
with an investigational one) is reported as a ``not-met`` finding of its
section: the request cannot be approved under the policy. Nothing here
approves or denies: it says what the form will ask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from builder.prepopulation import sources
from cql_like.engine import CompiledRequest, Evaluation
from policies.index import index_policy, reads
from policies.model import (
    AnyOf,
    Coding,
    EhrSource,
    Node,
    Policy,
    Question,
    document_question,
    walk,
)
from scoring.fill import earlier_answers, fill
from scoring.response import check_answers

# The prefetch keys a CDS client sends, and the resource type each holds
PATIENT = "patient"
COVERAGE = "coverage"
PRACTITIONER_ROLE = "practitionerRole"
CONDITIONS = "conditions"
OBSERVATIONS = "observations"
MEDICATION_REQUESTS = "medicationRequests"
MEDICATION_STATEMENTS = "medicationStatements"
PREFETCH_TYPES = {
    PATIENT: "Patient",
    COVERAGE: "Coverage",
    PRACTITIONER_ROLE: "PractitionerRole",
    CONDITIONS: "Condition",
    OBSERVATIONS: "Observation",
    MEDICATION_REQUESTS: "MedicationRequest",
    MEDICATION_STATEMENTS: "MedicationStatement",
}
# the searches an ``ehr`` source of each kind reads
_SEARCHES = {
    "condition": (CONDITIONS,),
    "observation": (OBSERVATIONS,),
    "medication": (MEDICATION_REQUESTS, MEDICATION_STATEMENTS),
}
# the statuses the generated CQL counts (builder/templates/prepopulation.cql.j2)
_VOID_VERIFICATION = frozenset({"entered-in-error", "refuted"})
_OBSERVATION_STATUSES = frozenset({"final", "amended", "corrected"})
_REQUEST_STATUSES = frozenset({"active", "completed", "on-hold"})
_STATEMENT_STATUSES = frozenset({"active", "completed", "intended"})
_FHIR_DATE = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")

Status = Literal["met", "not-met", "open"]
NeedKind = Literal["answer", "document", "review"]


class RecordError(ValueError):
    """A prefetch that is not what its key holds (names the key)."""


# --- the record ---------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """The FHIR resources (plain dicts) a CDS client prefetched, by key, and
    which keys it fetched: a key not fetched is unknown, never "none found"."""

    patient: Mapping[str, Any] | None = None
    coverage: tuple[Mapping[str, Any], ...] = ()
    practitioner_role: Mapping[str, Any] | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    observations: tuple[Mapping[str, Any], ...] = ()
    medication_requests: tuple[Mapping[str, Any], ...] = ()
    medication_statements: tuple[Mapping[str, Any], ...] = ()
    fetched: frozenset[str] = frozenset()

    @classmethod
    def from_prefetch(cls, prefetch: Mapping[str, Any]) -> Record:
        """A CDS Hooks ``prefetch`` object: a read gives a resource, a search a
        Bundle (its entries of the key's type are kept); ``null`` is fetched and
        found nothing; a key left out was not fetched. Keys this module does
        not read are ignored."""
        found: dict[str, list[Mapping[str, Any]]] = {}
        for key, kind in PREFETCH_TYPES.items():
            if key in prefetch:
                found[key] = _resources(key, kind, prefetch[key])
        return cls(
            patient=_first(found.get(PATIENT, [])),
            coverage=tuple(found.get(COVERAGE, [])),
            practitioner_role=_first(found.get(PRACTITIONER_ROLE, [])),
            conditions=tuple(found.get(CONDITIONS, [])),
            observations=tuple(found.get(OBSERVATIONS, [])),
            medication_requests=tuple(found.get(MEDICATION_REQUESTS, [])),
            medication_statements=tuple(found.get(MEDICATION_STATEMENTS, [])),
            fetched=frozenset(found),
        )

    @classmethod
    def from_resources(
        cls,
        resources: Iterable[Mapping[str, Any]],
        fetched: Iterable[str] = tuple(PREFETCH_TYPES),
    ) -> Record:
        """A chart's resources sorted into the prefetch keys by type, as a
        client fetching ``fetched`` (every key by default) would send them."""
        by_type: dict[str, list[Mapping[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(str(resource.get("resourceType")), []).append(resource)
        keys = frozenset(fetched)
        prefetch = {
            key: _bundle(by_type.get(kind, []))
            for key, kind in PREFETCH_TYPES.items()
            if key in keys
        }
        return cls.from_prefetch(prefetch)


def _bundle(resources: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not resources:
        return None
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": dict(r)} for r in resources],
    }


def _resources(key: str, kind: str, value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise RecordError(f"prefetch {key!r}: expected a {kind} or a Bundle, or null")
    if value.get("resourceType") == kind:
        return [value]
    if value.get("resourceType") != "Bundle":
        raise RecordError(
            f"prefetch {key!r}: expected a {kind} or a Bundle, got {value.get('resourceType')!r}"
        )
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        raise RecordError(f"prefetch {key!r}: Bundle.entry must be a list")
    # a searchset may carry an OperationOutcome, or included resources
    return [
        e["resource"]
        for e in entries
        if isinstance(e, Mapping)
        and isinstance(e.get("resource"), Mapping)
        and e["resource"].get("resourceType") == kind
    ]


def _first(resources: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return resources[0] if resources else None


# --- the prefetch templates --------------------------------------------------------


def prefetch_templates(policies: Iterable[Policy]) -> dict[str, str]:
    """The CDS Hooks prefetch templates the policies need: the Patient, the
    member's Coverage, the prescriber's PractitionerRole, and a search per
    resource type an ``ehr`` source reads, filtered on every code the sources
    name (tokens as CDS Hooks writes them)."""
    codes: dict[str, dict[tuple[str, str], None]] = {}
    for policy in policies:
        for question in sources(policy).values():
            for source in question.ehr:
                for key in _SEARCHES.get(source.kind, ()):
                    for coding in source.codes:
                        codes.setdefault(key, {})[(coding.system, coding.code)] = None
    patient = "{{context.patientId}}"
    templates = {
        PATIENT: f"Patient/{patient}",
        COVERAGE: f"Coverage?patient={patient}&status=active",
        PRACTITIONER_ROLE: "PractitionerRole/{{userPractitionerRoleId}}",
    }
    for key in (CONDITIONS, OBSERVATIONS, MEDICATION_REQUESTS, MEDICATION_STATEMENTS):
        if key in codes:
            tokens = ",".join(f"{system}|{code}" for system, code in sorted(codes[key]))
            templates[key] = f"{PREFETCH_TYPES[key]}?patient={patient}&code={tokens}"
    return templates


# --- prefill ---------------------------------------------------------------------


@dataclass(frozen=True)
class Prefill:
    """A question as the record answers it: ``value`` as the CQL gives it (a
    date as text, a boolean, a choice's coding) or None (left to the
    prescriber); ``read`` what in the record it rests on; ``unfetched`` the
    prefetch keys it needed that the client did not send."""

    question: str
    text: str
    value: Any
    read: tuple[str, ...] = ()
    unfetched: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"question": self.question, "text": self.text, "value": self.value}
        if self.read:
            out["read"] = list(self.read)
        if self.unfetched:
            out["unfetched"] = list(self.unfetched)
        return out


def prefills(policy: Policy, record: Record, answer_codes: Mapping[str, Any]) -> dict[str, Prefill]:
    """Every question of ``policy`` with an ``ehr`` source, answered from the
    record. ``answer_codes``: question name → the coding each condition
    source's ``answer`` gives (see :func:`answer_codings`)."""
    return {
        name: _prefill(question, record, answer_codes.get(name, {}))
        for name, question in sources(policy).items()
    }


def answer_codings(policy: Policy) -> dict[str, dict[str, dict[str, str]]]:
    """Question name → option key → the coding a record gives for it: the
    question's own options and the investigational answers the policy adds
    (as the generated CQL writes them)."""
    found: dict[str, dict[str, dict[str, str]]] = {}
    for kind, drug in policy.forms():
        index = index_policy(policy, kind, drug)
        for name, info in index.questions.items():
            if info.question.ehr and info.question.type == "choice":
                codings = found.setdefault(name, {})
                for option in info.options:
                    codings.setdefault(option.key, index.coding(option))
    return found


def _prefill(question: Question, record: Record, codings: Mapping[str, Any]) -> Prefill:
    read: list[str] = []
    unfetched: list[str] = []
    value: Any = None
    for source in question.ehr:
        needed = {
            "birth_date": (PATIENT,),
            "specialty": (PRACTITIONER_ROLE,),
        }.get(source.kind, _SEARCHES.get(source.kind, ()))
        unfetched += [key for key in needed if key not in record.fetched]
        found = _answer(source, record, read)
        if found is not None and value is None:
            # a choice takes the first source on record (the CQL's if … else if)
            value = codings[source.answer] if source.answer is not None else found
    return Prefill(
        question.name,
        question.text,
        value,
        tuple(dict.fromkeys(read)),
        tuple(dict.fromkeys(unfetched)),
    )


def _answer(source: EhrSource, record: Record, read: list[str]) -> Any:
    """What one source says (None: nothing), noting what it read."""
    if source.kind == "birth_date":
        return _birth_date(record, read)
    if source.kind == "condition":
        return _condition(source, record, read)
    if source.kind == "observation":
        return _observation(source, record, read)
    if source.kind == "medication":
        return _medication(source, record, read)
    return _specialty(source, record, read)


def _birth_date(record: Record, read: list[str]) -> str | None:
    if PATIENT not in record.fetched:
        read.append("the Patient was not fetched")
        return None
    birth = (record.patient or {}).get("birthDate")
    if not isinstance(birth, str):
        read.append("no birth date on the Patient")
        return None
    if not _is_date(birth):
        # the CQL reads no date there either
        read.append(f"the Patient's birth date {birth!r} is not a date")
        return None
    read.append(f"Patient birth date {birth}")
    return birth


def _is_date(text: str) -> bool:
    """A FHIR date (a year, a month or a day of the calendar)."""
    if not _FHIR_DATE.fullmatch(text):
        return False
    try:
        return len(text) < 10 or bool(date.fromisoformat(text))
    except ValueError:
        return False


def _matching(codings: Any, wanted: Sequence[Coding]) -> Mapping[str, Any] | None:
    """The first coding that is one of ``wanted`` (system and code equal)."""
    pairs = {(c.system, c.code) for c in wanted}
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, Mapping) and (coding.get("system"), coding.get("code")) in pairs:
            return coding
    return None


def _codings(concept: Any) -> Any:
    return concept.get("coding") if isinstance(concept, Mapping) else None


def _codes(wanted: Sequence[Coding]) -> str:
    return " or ".join(c.code for c in wanted)


def _named(coding: Mapping[str, Any], wanted: Sequence[Coding]) -> str:
    """A code as the evidence names it: the code and its display."""
    display = coding.get("display") or next(
        (c.display for c in wanted if c.code == coding.get("code") and c.display), None
    )
    return f"{coding.get('code')}{f' {display}' if display else ''}"


def _when(resource: Mapping[str, Any], *elements: str) -> str | None:
    for element in elements:
        value = resource.get(element)
        if isinstance(value, Mapping):
            value = value.get("start")
        if isinstance(value, str):
            return value[:10]
    return None


def _status_code(concept: Any) -> str | None:
    codings = _codings(concept)
    if isinstance(codings, list):
        for coding in codings:
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                return str(coding["code"])
    return None


def _condition(source: EhrSource, record: Record, read: list[str]) -> bool | None:
    if CONDITIONS not in record.fetched:
        read.append("Conditions were not fetched")
        return None
    found = False
    for condition in record.conditions:
        coding = _matching(_codings(condition.get("code")), source.codes)
        if coding is None:
            continue
        verification = {
            str(c.get("code"))
            for c in _codings(condition.get("verificationStatus")) or []
            if isinstance(c, Mapping)
        }
        clinical = _status_code(condition.get("clinicalStatus")) or "no clinical status"
        parts = [f"Condition {_named(coding, source.codes)}", clinical]
        if verification & _VOID_VERIFICATION:
            parts.append(f"{sorted(verification & _VOID_VERIFICATION)[0]}: not counted")
        else:
            found = True
        when = _when(condition, "onsetDateTime", "onsetPeriod", "recordedDate")
        read.append(", ".join([*parts, *([when] if when else [])]))
    if not found:
        read.append(f"no Condition {_codes(source.codes)} on record")
    return True if found else None


def _observation(source: EhrSource, record: Record, read: list[str]) -> bool | None:
    if OBSERVATIONS not in record.fetched:
        read.append("Observations were not fetched")
        return None
    present = absent = False
    seen = False
    for observation in record.observations:
        coding = _matching(_codings(observation.get("code")), source.codes)
        if coding is None:
            continue
        status = observation.get("status")
        result = _codings(observation.get("valueCodeableConcept"))
        shown = _matching(result, [*source.present, *source.absent])
        parts = [f"Observation {_named(coding, source.codes)}"]
        parts.append(
            _named(shown, [*source.present, *source.absent]) if shown else "no coded result"
        )
        parts.append(str(status))
        when = _when(observation, "effectiveDateTime", "effectivePeriod", "issued")
        if status not in _OBSERVATION_STATUSES:
            parts.append("not counted")
        else:
            seen = True
            present = present or _matching(result, source.present) is not None
            absent = absent or _matching(result, source.absent) is not None
        read.append(", ".join([*parts, *([when] if when else [])]))
    if not seen:
        read.append(f"no Observation {_codes(source.codes)} on record")
    if present:
        return True
    if absent:
        return False
    return None


def _medication(source: EhrSource, record: Record, read: list[str]) -> bool | None:
    found = False
    for key, kind, statuses, date_element in (
        (MEDICATION_REQUESTS, "MedicationRequest", _REQUEST_STATUSES, "authoredOn"),
        (MEDICATION_STATEMENTS, "MedicationStatement", _STATEMENT_STATUSES, "effectiveDateTime"),
    ):
        if key not in record.fetched:
            read.append(f"{kind}s were not fetched")
            continue
        resources = getattr(
            record, "medication_requests" if key == MEDICATION_REQUESTS else "medication_statements"
        )
        for resource in resources:
            coding = _matching(_codings(resource.get("medicationCodeableConcept")), source.codes)
            if coding is None:
                continue
            status = resource.get("status")
            parts = [f"{kind} {_named(coding, source.codes)}", str(status)]
            if status in statuses:
                found = True
            else:
                parts.append("not counted")
            when = _when(resource, date_element, "effectivePeriod", "dateAsserted")
            read.append(", ".join([*parts, *([when] if when else [])]))
    if not found:
        read.append(f"no order or statement of {_codes(source.codes)} on record")
    return True if found else None


def _specialty(source: EhrSource, record: Record, read: list[str]) -> bool | None:
    if PRACTITIONER_ROLE not in record.fetched:
        read.append("the prescriber's PractitionerRole was not fetched")
        return None
    role = record.practitioner_role
    if role is None:
        read.append("no PractitionerRole for the prescriber")
        return None
    specialties = role.get("specialty")
    specialties = specialties if isinstance(specialties, list) else []
    for specialty in specialties:
        coding = _matching(_codings(specialty), source.codes)
        if coding is not None:
            read.append(f"PractitionerRole specialty {_named(coding, source.codes)}")
            return True
    if specialties:
        named = [
            str(c.get("code"))
            for s in specialties
            for c in (_codings(s) or [])
            if isinstance(c, Mapping)
        ]
        shown = ", ".join(named) or "uncoded"
        read.append(f"PractitionerRole specialties {shown}, not {_codes(source.codes)}")
        return False
    read.append("the PractitionerRole names no specialty")
    return None


# --- the criteria -----------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    """What an open section waits for: the prescriber's answer to a question
    (its text), a document (its name), or a pharmacist's review."""

    kind: NeedKind
    text: str
    link_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.link_id:
            out["linkId"] = self.link_id
        return out


@dataclass(frozen=True)
class Finding:
    """One section of the policy as the record alone decides it."""

    section: str
    text: str  # the policy's words, as notices and review pages cite them
    kind: str  # the criterion's kind, or "investigational"
    status: Status
    read: tuple[str, ...] = ()  # what in the record it rests on
    needs: tuple[Need, ...] = ()  # open: what it still needs
    # open because whether it applies waits for an answer: what it is once it does
    if_applies: Status | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "section": self.section,
            "text": self.text,
            "kind": self.kind,
            "status": self.status,
        }
        if self.read:
            out["read"] = list(self.read)
        if self.needs:
            out["needs"] = [n.to_json() for n in self.needs]
        if self.if_applies is not None:
            out["ifApplies"] = self.if_applies
        return out


@dataclass(frozen=True)
class RecordFindings:
    """What a record shows of one form's policy, as of a date."""

    policy: str
    questionnaire: str  # url|version
    as_of: date
    prefills: dict[str, Prefill]
    findings: tuple[Finding, ...]
    unfetched: tuple[str, ...] = field(default=())  # the prefetch keys the form needed, not sent

    def status_of(self, section: str) -> Status | None:
        return next((f.status for f in self.findings if f.section == section), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "questionnaire": self.questionnaire,
            "asOf": self.as_of.isoformat(),
            "prefills": [p.to_json() for p in self.prefills.values()],
            "findings": [f.to_json() for f in self.findings],
            **({"unfetched": list(self.unfetched)} if self.unfetched else {}),
        }


_STATUS: dict[str, Status] = {
    "met": "met",
    "not-met": "not-met",
    "unknown": "open",
    "review": "open",
}


def evaluate_record(package: CompiledRequest, record: Record, as_of: date) -> RecordFindings:
    """The form's prefillable questions answered from ``record`` and its
    sections evaluated on those answers alone, as of ``as_of``."""
    policy = package.policy
    asked = {
        name: prefill
        for name, prefill in prefills(policy, record, answer_codings(policy)).items()
        if name in package.link_of
    }
    given = {
        name: (p.value["code"] if isinstance(p.value, Mapping) else p.value)
        for name, p in asked.items()
        if p.value is not None and _offered(package, name, p.value)
    }
    response = fill(package, given, subject=None)
    checked = check_answers(package, response, prune_disabled=True)
    evaluation = package.evaluate(response, checked.by_link, as_of, checked.enabled)
    # the same answers where an enableWhen only waits for an unanswered question
    raw = {
        link: [next(v for k, v in answer.items() if k.startswith("value")) for answer in answers]
        for link, answers in earlier_answers(response).items()
    }
    assumed, waiting = _assumed_enablement(package, response, raw, as_of)
    assumed_answers = {k: v for k, v in raw.items() if assumed.get(k)}
    hypothetical = package.evaluate(response, assumed_answers, as_of, assumed)
    findings = _findings(
        package,
        asked,
        (evaluation, checked.by_link),
        (hypothetical, assumed_answers),
        waiting,
    )
    unfetched = tuple(dict.fromkeys(key for p in asked.values() for key in p.unfetched))
    questionnaire = package.questionnaire
    return RecordFindings(
        policy=policy.id,
        questionnaire=f"{questionnaire['url']}|{questionnaire['version']}",
        as_of=as_of,
        prefills=asked,
        findings=tuple(findings),
        unfetched=unfetched,
    )


def _offered(package: CompiledRequest, name: str, value: Any) -> bool:
    """A choice the record gives is an option of this form's item (a policy
    of several drugs may offer an answer in one form and not another)."""
    if not isinstance(value, Mapping):
        return True
    offered = package.codings.get(package.link_of[name], [])
    return any(c["system"] == value["system"] and c["code"] == value["code"] for c in offered)


def _assumed_enablement(
    package: CompiledRequest,
    response: Mapping[str, Any],
    answers: Mapping[str, list[Any]],
    as_of: date,
) -> tuple[dict[str, bool], dict[str, tuple[str, ...]]]:
    """Each item's enablement when a section's enableWhen that is not true,
    and reads a question left unanswered, is taken as true (it may be, once
    answered); and, for those sections, the questions they wait for. A
    question's own enableWhen is left as it is: it is asked only when it
    applies."""
    variables = package.answer_variables(answers, as_of)
    enabled: dict[str, bool] = {}
    waiting: dict[str, tuple[str, ...]] = {}
    for link_id, spec in package.items.items():
        on = enabled.get(spec.parent, True) if spec.parent else True
        if on and spec.enabled is not None:
            truth = spec.enabled.truth_of(spec.enabled.evaluate(response, variables))
            unanswered = tuple(n for n in sorted(spec.enabled.reads) if not variables.get(n))
            if truth is not True and unanswered and spec.type == "group":
                waiting[link_id] = unanswered
            else:
                on = truth is True
        enabled[link_id] = on
    return enabled, waiting


def _findings(
    package: CompiledRequest,
    asked: Mapping[str, Prefill],
    actual: tuple[Evaluation, Mapping[str, list[Any]]],
    assumed: tuple[Evaluation, Mapping[str, list[Any]]],
    waiting: Mapping[str, tuple[str, ...]],
) -> list[Finding]:
    """Each section's finding: from the evaluation on the answers the form
    takes (``actual``), or, for a section that only waits to apply, from the
    one with the sections waiting taken as applying (``assumed``); each with
    the answers it was given, by linkId."""
    policy = package.policy
    evaluation = actual[0]
    hypothetical = assumed[0]
    index = package.index
    order = list(package.items)
    # the form asks a criterion's document as a generated attachment question
    documents = {
        document_question(c): c.documentation.document
        for c in walk(policy.request(package.kind).criteria)
        if c.documentation is not None
    }

    def need(link_id: str) -> Need:
        spec = package.items[link_id]
        name = spec.question or link_id
        if spec.type == "attachment":
            return Need(
                "document", documents.get(name, index.questions[name].question.text), link_id
            )
        return Need("answer", index.questions[name].question.text, link_id)

    def subtree_questions(ids: set[str]) -> list[str]:
        return [
            name
            for name, info in index.questions.items()
            if info.section in ids or ids & set(info.sections)
        ]

    def needs_of(
        criterion_ids: list[str], run: tuple[Evaluation, Mapping[str, list[Any]]]
    ) -> list[Need]:
        result, answered = run
        links: dict[str, None] = {}
        ids = set(criterion_ids)
        for link_id in result.missing_questions:
            name = package.items[link_id].question
            if name and name in subtree_questions(ids):
                links[link_id] = None
        for criterion in walk(package.tree):
            if criterion.id in ids and result.statuses.get(criterion.id) in ("unknown", "review"):
                for name in sorted(reads(policy, criterion.met)):
                    link = package.link_of.get(name)
                    if link and result.enabled.get(link) and not answered.get(link):
                        links[link] = None
        out = [need(link) for link in sorted(links, key=order.index)]
        if any(result.statuses.get(i) == "review" for i in ids):
            out.append(Need("review", "a pharmacist's review of the request"))
        return out

    def read_of(ids: set[str]) -> tuple[str, ...]:
        names = subtree_questions(ids)
        return tuple(
            dict.fromkeys(line for name in names if name in asked for line in asked[name].read)
        )

    findings: list[Finding] = []
    for criterion in walk(package.tree):
        subtree = [c.id for c in walk([criterion])]
        status = evaluation.statuses.get(criterion.id)
        text = index.section_text.get(criterion.id, criterion.text)
        if status is None:
            continue
        if status != "not-applicable":
            findings.append(
                Finding(
                    criterion.id,
                    text,
                    criterion.kind,
                    _STATUS[status],
                    read_of(set(subtree)),
                    tuple(needs_of(subtree, actual)) if _STATUS[status] == "open" else (),
                )
            )
            continue
        # not applicable: open when whether it applies waits for an answer
        waits = _waits_for(package, criterion.id, waiting)
        if_applies = hypothetical.statuses.get(criterion.id)
        if not waits or if_applies in (None, "not-applicable"):
            continue
        wanted = [need(package.link_of[name]) for name in waits if name in package.link_of]
        more = needs_of(subtree, assumed) if _STATUS[if_applies] == "open" else []
        needs = sorted(dict.fromkeys([*wanted, *more]), key=lambda n: _place(n, order))
        findings.append(
            Finding(
                criterion.id,
                text,
                criterion.kind,
                "open",
                read_of(set(subtree)),
                tuple(needs),
                _STATUS[if_applies],
            )
        )
    for condition_id in evaluation.investigational:
        names = [
            name
            for name, info in index.questions.items()
            if condition_id in info.sections and name in asked
        ]
        findings.append(
            Finding(
                condition_id,
                index.section_text.get(condition_id, condition_id),
                "investigational",
                "not-met",
                tuple(dict.fromkeys(line for name in names for line in asked[name].read)),
            )
        )
    return findings


def _place(need: Need, order: list[str]) -> int:
    """Where a need comes in the form (a review, asked of no item, last)."""
    return order.index(need.link_id) if need.link_id in order else len(order)


def _waits_for(
    package: CompiledRequest, section: str, waiting: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """The unanswered questions whose answers decide whether ``section``
    applies: those the enableWhen of its group, or of a group holding it,
    waits for (a section asking no question has no group of its own: its
    parent sections' groups decide)."""
    found: dict[str, None] = {}
    for criterion_id in (section, *_ancestors(package).get(section, ())):
        spec = package.items.get(criterion_id)
        while spec is not None:
            for name in waiting.get(spec.link_id, ()):
                found[name] = None
            spec = package.items.get(spec.parent) if spec.parent else None
    return tuple(found)


def _ancestors(package: CompiledRequest) -> dict[str, tuple[str, ...]]:
    """Each section of the form's tree → the sections holding it, nearest first."""
    found: dict[str, tuple[str, ...]] = {}

    def visit(nodes: Sequence[Node], above: tuple[str, ...]) -> None:
        for node in nodes:
            if isinstance(node, AnyOf):
                visit(node.any_of, above)
            else:
                found[node.id] = above
                visit(node.children, (node.id, *above))

    visit(package.tree, ())
    return found
