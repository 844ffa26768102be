"""The impact of a new policy version on the requests already decided: each
stored request re-scored under the new version and compared with what the
scorer decided then (``dtr impact``).

A stored request's answers are those of the version that decided it; they
move to the new version's form with :func:`scoring.carry.carry_over`, the
function the superseded-version rule uses (by linkId, only where the
question is the same question). A question new in the version is therefore
unanswered: it can only make a request pend, never deny. Each request is
re-scored as of the day it was decided, so that a changed authorization
period or quantity is the policy's change, not the calendar's.

What is compared is the scorer's decision: a record held for a pharmacist
compares the scorer's recommendation, and a pharmacist's own decision is not
re-made. The report is built record by record (:meth:`Impact.add`), so a
caller can stream the records from the store and keep only the counts and a
few examples per transition; each request's CSV row goes to a stream.

Pure: the records come in as :class:`Stored`, the report goes out as text,
CSV rows or HTML (jinja2, autoescaped).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from builder.questionnaire import build
from cql_like.engine import CompiledRequest
from policies.model import Policy
from qpackage.catalog import Catalog
from scoring import InvalidInput, assess
from scoring.carry import carry_over
from scoring.response import check_answers

EXAMPLES = 3  # examples kept per transition
SECTIONS = ("unmet", "missing", "investigational", "review", "excluded")
NO_FORM = "no form"  # the new version has no form at the record's url
NOT_RESCORED = "not re-scored"  # the record's own version cannot be read (see the reason)
CSV_COLUMNS = (
    "record", "reference", "case", "questionnaire", "new_questionnaire", "changed", "before", "after",
    "cited", "no_longer_cited", "authorization_before", "authorization_after",
    "quantity_before", "quantity_after", "new_questions", "note",
)  # fmt: skip


def case_path(record_id: str) -> str:
    """Where the pharmacist's page shows a case (every read of it audited)."""
    return f"/review/{record_id}"


def report_path(report_id: str) -> str:
    """Where the pharmacist's page shows a finished run's report (kept in
    the store by ``dtr impact``), its CSV at the same path with ``.csv``."""
    return f"/impact/{report_id}"


def proposed_forms(policy: Policy) -> dict[str, CompiledRequest]:
    """The new version's forms by url, built in memory (nothing written,
    nothing released; without the prefill extensions, which decide nothing),
    each definition compiled when first evaluated."""
    forms = {}
    for kind, drug in policy.forms():
        questionnaire = build(policy, kind, drug, None)
        forms[questionnaire["url"]] = CompiledRequest(
            policy, kind, questionnaire, drug, eager=False
        )
    return forms


@dataclass(frozen=True)
class Stored:
    """What the report needs of a stored request."""

    id: str
    reference: str | None
    questionnaire: str  # url|version of the version that decided it
    response: Mapping[str, Any]  # its answers to that version
    decided: Mapping[str, Any]  # the scorer's determination JSON (its recommendation if held)
    evaluated_at: str  # the day it was decided as of (ISO)


def outcome_label(determination: Mapping[str, Any] | None) -> str:
    """An outcome as the report counts it: a pend with its reason."""
    if determination is None:
        return NO_FORM
    outcome = str(determination.get("outcome"))
    reason = determination.get("pendReason")
    if outcome == "pended" and reason:
        return f"pended ({str(reason).replace('-', ' ')})"
    return outcome


def _period(determination: Mapping[str, Any] | None) -> str:
    term = (determination or {}).get("authorization")
    if not term:
        return ""
    return f"{term['start']} to {term['end']} ({term['months']} months)"


def _quantity(determination: Mapping[str, Any] | None) -> str:
    determination = determination or {}
    quantity = determination.get("quantity")
    limits = "; ".join(
        f"limit {q['quantity']} {q['unit']} per {q['periodDays']} days"
        for q in determination.get("quantityLimits") or []
    )
    if quantity:
        allowed = f"{quantity['approved']} of {quantity['requested']} {quantity['unit']}"
        return f"{allowed} per {quantity['periodDays']} days" + (f" ({limits})" if limits else "")
    return limits


def _cited(determination: Mapping[str, Any] | None) -> set[str]:
    """Every section a determination cites, as ``kind: section``."""
    sections = (determination or {}).get("sections") or {}
    return {f"{kind}: {s}" for kind in SECTIONS for s in sections.get(kind) or []}


@dataclass(frozen=True)
class Change:
    """One stored request re-scored: before and after."""

    record: Stored
    before: str
    after: str
    new_questionnaire: str = ""
    cited: tuple[str, ...] = ()  # cited now, not before
    no_longer_cited: tuple[str, ...] = ()
    period: tuple[str, str] = ("", "")
    quantity: tuple[str, str] = ("", "")
    # questions the request would now be asked (missing before): (linkId, text, new in the version)
    questions: tuple[tuple[str, str, bool], ...] = ()
    note: str = ""  # why it was not re-scored, or which answers were not carried over

    @property
    def transition(self) -> str:
        return f"{self.before} → {self.after}"

    @property
    def changed(self) -> bool:
        return (
            self.before != self.after
            or bool(self.cited or self.no_longer_cited or self.questions)
            or self.period[0] != self.period[1]
            or self.quantity[0] != self.quantity[1]
        )

    def row(self) -> dict[str, str]:
        r = self.record
        return {
            "record": r.id,
            "reference": r.reference or "",
            "case": case_path(r.id),
            "questionnaire": r.questionnaire,
            "new_questionnaire": self.new_questionnaire,
            "changed": "yes" if self.changed else "no",
            "before": self.before,
            "after": self.after,
            "cited": "; ".join(self.cited),
            "no_longer_cited": "; ".join(self.no_longer_cited),
            "authorization_before": self.period[0],
            "authorization_after": self.period[1],
            "quantity_before": self.quantity[0],
            "quantity_after": self.quantity[1],
            "new_questions": "; ".join(link for link, _, _ in self.questions),
            "note": self.note,
        }


def rescore(old: Catalog, new: Mapping[str, CompiledRequest], record: Stored) -> Change:
    """``record`` decided again under the new version's form of the same url,
    its answers carried over, as of the day it was first decided."""
    before = outcome_label(record.decided)
    try:
        source = old.resolve(record.questionnaire)
        check_answers(source, record.response)
    except InvalidInput as exc:
        return Change(record, before, NOT_RESCORED, note=str(exc))
    target = new.get(source.questionnaire["url"])
    if target is None:
        return Change(record, before, NO_FORM, note="the new version has no form at its url")
    moved = carry_over(source, target, record.response)
    as_of = date.fromisoformat(record.evaluated_at[:10])
    try:
        determination = assess(target, moved.response, as_of)[0]
    except InvalidInput as exc:
        return Change(record, before, NOT_RESCORED, note=str(exc))
    after = determination.to_json()
    earlier = set(record.decided.get("missingQuestions") or [])
    earlier |= set(record.decided.get("reviewDocuments") or [])
    asked = [*determination.missing_questions, *determination.review_documents]
    questions = tuple(
        (link, determination.question_text.get(link, link), link not in source.items)
        for link in dict.fromkeys(asked)
        if link not in earlier
    )
    cited_before, cited_after = _cited(record.decided), _cited(after)
    return Change(
        record,
        before,
        outcome_label(after),
        new_questionnaire=determination.questionnaire,
        cited=tuple(sorted(cited_after - cited_before)),
        no_longer_cited=tuple(sorted(cited_before - cited_after)),
        period=(_period(record.decided), _period(after)),
        quantity=(_quantity(record.decided), _quantity(after)),
        questions=questions,
        note=(
            f"answers not carried over: {', '.join(moved.not_carried)}" if moved.not_carried else ""
        ),
    )


@dataclass
class Impact:
    """The report, added to one re-scored request at a time: counts and a
    few examples per transition (each request's CSV row is the caller's to
    keep: :func:`csv_line`). It can be saved as JSON and taken up again
    (:meth:`to_json`, :meth:`from_json`), so that a run stopped midway
    resumes to the same report."""

    policy: str
    new_version: str = ""
    old_versions: set[str] = field(default_factory=set)
    total: int = 0
    changed: int = 0
    transitions: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[Change]] = field(default_factory=dict)
    cited: Counter[str] = field(default_factory=Counter)
    no_longer_cited: Counter[str] = field(default_factory=Counter)
    periods: int = 0
    quantities: int = 0
    period_examples: list[Change] = field(default_factory=list)
    quantity_examples: list[Change] = field(default_factory=list)
    # the requests that would now pend, counted by the question they would be asked
    now_pending: int = 0
    questions: Counter[tuple[str, str, bool]] = field(default_factory=Counter)
    question_examples: dict[str, list[Change]] = field(default_factory=dict)

    def add(self, change: Change) -> None:
        self.total += 1
        self.transitions[change.transition] += 1
        self.old_versions.add(change.record.questionnaire.rsplit("|", 1)[-1])
        if not change.changed:
            return
        self.changed += 1
        _keep(self.examples.setdefault(change.transition, []), change)
        self.cited.update(change.cited)
        self.no_longer_cited.update(change.no_longer_cited)
        if change.period[0] != change.period[1]:
            self.periods += 1
            _keep(self.period_examples, change)
        if change.quantity[0] != change.quantity[1]:
            self.quantities += 1
            _keep(self.quantity_examples, change)
        if change.after.startswith("pended") and change.questions:
            self.now_pending += 1
            for question in change.questions:
                self.questions[question] += 1
                _keep(self.question_examples.setdefault(question[0], []), change)

    def merge(self, other: Impact) -> None:
        """``other``'s requests added after this report's: merged in the
        order the requests were stored, reports of consecutive parts give the
        report of one run over them all (the examples kept are the first of
        each kind, as :meth:`add` keeps them)."""
        self.total += other.total
        self.changed += other.changed
        self.old_versions |= other.old_versions
        self.transitions.update(other.transitions)
        for transition, changes in other.examples.items():
            for change in changes:
                _keep(self.examples.setdefault(transition, []), change)
        self.cited.update(other.cited)
        self.no_longer_cited.update(other.no_longer_cited)
        self.periods += other.periods
        self.quantities += other.quantities
        for change in other.period_examples:
            _keep(self.period_examples, change)
        for change in other.quantity_examples:
            _keep(self.quantity_examples, change)
        self.now_pending += other.now_pending
        self.questions.update(other.questions)
        for link, changes in other.question_examples.items():
            for change in changes:
                _keep(self.question_examples.setdefault(link, []), change)

    def to_json(self) -> dict[str, Any]:
        """The report so far, as JSON (the examples with what they show)."""
        return {
            "policy": self.policy,
            "newVersion": self.new_version,
            "oldVersions": sorted(self.old_versions),
            "total": self.total,
            "changed": self.changed,
            "transitions": dict(self.transitions),
            "examples": {t: [_example(c) for c in cs] for t, cs in self.examples.items()},
            "cited": dict(self.cited),
            "noLongerCited": dict(self.no_longer_cited),
            "periods": self.periods,
            "quantities": self.quantities,
            "periodExamples": [_example(c) for c in self.period_examples],
            "quantityExamples": [_example(c) for c in self.quantity_examples],
            "nowPending": self.now_pending,
            "questions": [[*q, n] for q, n in self.questions.items()],
            "questionExamples": {
                link: [_example(c) for c in cs] for link, cs in self.question_examples.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Impact:
        return cls(
            policy=data["policy"],
            new_version=data["newVersion"],
            old_versions=set(data["oldVersions"]),
            total=data["total"],
            changed=data["changed"],
            transitions=Counter(data["transitions"]),
            examples={t: [_change(e) for e in es] for t, es in data["examples"].items()},
            cited=Counter(data["cited"]),
            no_longer_cited=Counter(data["noLongerCited"]),
            periods=data["periods"],
            quantities=data["quantities"],
            period_examples=[_change(e) for e in data["periodExamples"]],
            quantity_examples=[_change(e) for e in data["quantityExamples"]],
            now_pending=data["nowPending"],
            questions=Counter({(q[0], q[1], q[2]): q[3] for q in data["questions"]}),
            question_examples={
                link: [_change(e) for e in es] for link, es in data["questionExamples"].items()
            },
        )

    def context(self) -> dict[str, Any]:
        """What the text and HTML templates show."""
        return {
            "impact": self,
            "transitions": sorted(self.transitions.items(), key=lambda t: (-t[1], t[0])),
            "cited": sorted(self.cited.items(), key=lambda t: (-t[1], t[0])),
            "no_longer_cited": sorted(self.no_longer_cited.items(), key=lambda t: (-t[1], t[0])),
            "questions": sorted(self.questions.items(), key=lambda t: (-t[1], t[0])),
            "old_versions": ", ".join(sorted(self.old_versions)),
            "case_path": case_path,
        }

    def text(self) -> str:
        return _ENV.get_template("impact.txt.j2").render(self.context())

    def html(self) -> str:
        return _ENV.get_template("impact.html.j2").render(self.context())


def _keep(examples: list[Change], change: Change) -> None:
    if len(examples) < EXAMPLES:
        examples.append(change)


def _example(change: Change) -> dict[str, Any]:
    """An example as the report shows it: its record, outcomes, period and quantity."""
    r = change.record
    return {
        "record": [r.id, r.reference, r.questionnaire],
        "before": change.before,
        "after": change.after,
        "period": list(change.period),
        "quantity": list(change.quantity),
    }


def _change(data: Mapping[str, Any]) -> Change:
    rid, reference, questionnaire = data["record"]
    return Change(
        Stored(rid, reference, questionnaire, {}, {}, ""),
        data["before"],
        data["after"],
        period=(data["period"][0], data["period"][1]),
        quantity=(data["quantity"][0], data["quantity"][1]),
    )


def csv_header() -> str:
    out = io.StringIO()
    csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n").writeheader()
    return out.getvalue()


def csv_line(change: Change) -> str:
    """A request's row of the CSV report, as one line."""
    out = io.StringIO()
    csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n").writerow(change.row())
    return out.getvalue()


_ENV = Environment(
    loader=PackageLoader("qpackage", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
