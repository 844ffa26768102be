"""Running a policy's worked examples, and what they cover.

Each example (:mod:`policies.examples`) is filled into a response to its
form as a prescriber's office would send it (:func:`scoring.fill.fill`),
scored at its evaluation date and compared, field by field, with what it
expects (:func:`mismatches`: the one comparison, used by ``dtr check`` and
``dtr build`` and by the tests). A mismatch refuses the policy, printing what
was expected and what was decided.

The **coverage rule**: every criterion of the policy is the cited reason —
not met (``unmet``, ``excluded``, ``review``) or unknown (``missing``) — in at
least one example (a criterion decided only by its children is covered
through them: it is never cited itself); every form has an approved example;
and every alternative of an any-of (``any_of``, or ``logic: any`` children),
every criterion asked only on some answers (``enable_when``) and every
branch with a length of its own is met in at least one approved example (or one met but for what a pharmacist must read: a policy may send
every approval to a pharmacist). So a wrong comparison or an inverted test
cannot hide behind a criterion no example fails, nor an approval path no
example takes.

It lives in the package layer because it scores: the builder checks the
examples against the forms (:mod:`builder.verification.examples`) but does
not score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from builder.verification.examples import built_forms, form_of
from builder.verification.paths import approval_paths, taken_paths
from cql_like.engine import CompiledRequest
from policies.examples import Examples
from policies.model import Criterion, Policy, walk
from scoring import InvalidInput, assess
from scoring.determination import Determination
from scoring.fill import fill
from scoring.response import check_size, check_structure


def observed(determination: Determination) -> dict[str, Any]:
    """A determination as the examples state theirs: its JSON, with the
    limits that applied as a plain list of quantities (``limits``)."""
    result = determination.to_json()
    result["limits"] = [limit["quantity"] for limit in result["quantityLimits"]]
    return result


def mismatches(expect: Mapping[str, Any], result: Mapping[str, Any], as_of: date) -> list[str]:
    """What differs between an example's expectations (its fields as
    written) and the whole determination (:func:`observed`): outcome, every
    section list, the missing questions, the documents left to a pharmacist
    to read, the authorization dates and the pend reason. A list the example
    does not state is expected empty; an approval must state its months and
    end date (the start is the evaluation date); quantities and limits are
    compared when stated."""
    authorization = result["authorization"] or {}
    quantity = result.get("quantity") or {}
    found = {
        "outcome": result["outcome"],
        "unmet": result["sections"]["unmet"],
        "missing": result["sections"]["missing"],
        "investigational": result["sections"]["investigational"],
        "review": result["sections"]["review"],
        "excluded": result["sections"]["excluded"],
        "missingQuestions": result["missingQuestions"],
        "reviewDocuments": result.get("reviewDocuments", []),
        "pendReason": result["pendReason"],
        "months": authorization.get("months"),
        "start": authorization.get("start"),
        "end": authorization.get("end"),
        # compared only when stated
        "limits": result["limits"],
        "approvedQuantity": quantity.get("approved"),
        "requestedQuantity": quantity.get("requested"),
    }
    problems = []
    approved = expect["outcome"] == "approved"
    if approved and not {"months", "end"} <= expect.keys():
        problems.append("an approval must state its months and end date")
    pended = expect["outcome"] == "pended"
    defaults: dict[str, Any] = {
        "unmet": [],
        "missing": [],
        "investigational": [],
        "review": [],
        "excluded": [],
        "missingQuestions": [],
        "reviewDocuments": [],
        "pendReason": (
            ("review" if expect.get("review") else "missing-information") if pended else None
        ),
        "months": None,
        "start": as_of if approved else None,
        "end": None,
    }
    # the outcome first: what a reader of the refusal wants to see
    for key, wanted in {"outcome": expect["outcome"], **defaults, **expect}.items():
        if isinstance(wanted, date):
            wanted = wanted.isoformat()
        if isinstance(wanted, tuple):
            wanted = list(wanted)
        if found[key] != wanted:
            problems.append(f"{key}: expected {wanted!r}, got {found[key]!r}")
    return problems


@dataclass
class Report:
    """What running one policy's examples found."""

    run: int = 0
    problems: list[str] = field(default_factory=list)  # mismatches and refused examples
    failed: set[str] = field(default_factory=set)  # the examples that did not decide as written
    criteria: list[str] = field(default_factory=list)  # every criterion, in policy order
    cited: set[str] = field(default_factory=set)  # criteria some example cites
    paths: list[str] = field(default_factory=list)  # every approval alternative
    approved_through: set[str] = field(default_factory=set)  # alternatives some approval takes

    @property
    def uncited(self) -> list[str]:
        return [c for c in self.criteria if c not in self.cited]

    @property
    def untaken(self) -> list[str]:
        return [p for p in self.paths if p not in self.approved_through]

    def coverage_problems(self, source: str) -> list[str]:
        out = [
            f"{source}: {c}: no example cites it (not met or unknown): add one that fails it"
            for c in self.uncited
        ]
        for path in self.untaken:
            if path.startswith("the "):  # a form
                out.append(f"{source}: {path}: no example is approved: add one")
            else:
                out.append(
                    f"{source}: {path}: no approved example goes through it (an alternative,"
                    " a conditional criterion or a branch): add one"
                )
        return out

    def summary(self) -> str:
        return (
            f"worked examples: {self.run} run, {self.run - len(self.failed)} as expected;"
            f" criteria cited {len(self.criteria) - len(self.uncited)}/{len(self.criteria)};"
            f" approval paths taken {len(self.paths) - len(self.untaken)}/{len(self.paths)}"
        )


def run_examples(policy: Policy, examples: Examples, source: str) -> Report:
    """Every example of ``examples`` scored against the policy's forms
    (checked first: see :func:`builder.verification.examples.example_problems`),
    each mismatch a problem ``FILE: example 'NAME': FIELD: expected …, got …``;
    with what they cover."""
    # compiled afresh, as the service compiles them: the build-time
    # exploration's copies keep a memo of their own
    forms = {
        key: CompiledRequest(built.policy, built.kind, built.questionnaire, built.drug)
        for key, built in built_forms(policy).items()
    }
    report = Report()
    for key, form in forms.items():
        for criterion in walk(form.tree):
            if _decides(criterion) and criterion.id not in report.criteria:
                report.criteria.append(criterion.id)
        for path in [_form_path(key), *approval_paths(policy, form.kind, form.tree)]:
            if path not in report.paths:
                report.paths.append(path)
    for example in examples.cases:
        where = f"{source}: example {example.name!r}"
        package = form_of(forms, example)
        if package is None:
            continue  # refused by the builder's check of the examples
        as_of = examples.as_of_for(example)
        try:
            response = fill(package, examples.answers(example))
            check_size(package, response)
            check_structure(response)
            determination, evaluation, _ = assess(package, response, as_of)
        except (InvalidInput, KeyError) as exc:
            report.failed.add(example.name)
            report.problems.append(f"{where}: the answers are refused: {exc}")
            continue
        report.run += 1
        found = observed(determination)
        differences = mismatches(example.expect.stated(), found, as_of)
        if differences:
            report.failed.add(example.name)
        report.problems += [f"{where}: {p}" for p in differences]
        sections = found["sections"]
        for name in ("unmet", "missing", "excluded", "review"):
            report.cited.update(sections[name])
        if _approvable(found):
            report.approved_through.add(_form_path((example.request, example.drug)))
            report.approved_through.update(
                taken_paths(policy, package.kind, package.tree, evaluation.statuses)
            )
    return report


def _approvable(found: Mapping[str, Any]) -> bool:
    """Approved, or met but for what a pharmacist must read (a policy that
    sends every approval to a pharmacist approves only that way)."""
    sections = found["sections"]
    return found["outcome"] == "approved" or (
        found["outcome"] == "pended"
        and found["pendReason"] == "review"
        and not sections["unmet"]
        and not sections["missing"]
    )


def _decides(criterion: Criterion) -> bool:
    """Whether a criterion decides anything itself: one decided only by its
    children (no ``met``, no document) is never the cited reason — its
    children are — and is covered through them."""
    return not (
        criterion.met is None
        and criterion.documentation is None
        and (criterion.children or criterion.include)
    )


def _form_path(key: tuple[str, str | None]) -> str:
    request, drug = key
    return f"the {request} form{f' of {drug}' if drug else ''}"
