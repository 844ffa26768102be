"""What a routing error does to a form, seen in its exploration.

A routing error leaves a form fewer ways to a decision than its author
meant: an ``enable_when`` on the wrong answer (the standard criteria asked
only of emergencies, so every other request is denied), ``logic: all``
written where ``any`` was meant (an alternative that can then never approve
by itself). Each criterion may still verify on its own; what shows the error
is the whole form, explored as a provider fills it
(:meth:`builder.verification.explore.Explorer.run`). Two checks, on the end
states that exploration reaches:

1. **Every question asked can change the determination** — its outcome, its
   period, its quantity or the sections it cites — in some end state: there,
   another answer to it (the others kept) gives another determination, or,
   where it is enabled and unanswered, two of its answers give two. A
   question only kept for the record says so (``record_only: true``) and is
   not held to this. Answers are compared with answers, never with leaving
   the question unanswered (that pends any required question), so a
   question with one possible answer (an attachment, free text) is not
   checked here.
2. **Every approval path reaches approved on its own** — the paths the
   worked examples' coverage counts (:mod:`builder.verification.paths`):
   each alternative of an any-of, each criterion asked only on some answers,
   each branch with a length of its own, each way of a ``combine: or``
   criterion. An alternative must approve with no other alternative of its
   group met: one that approves only together with another is not an
   alternative.

Where a bound stopped the exploration (``MAX_EVALUATIONS`` scorings, or a
criterion whose answer combinations exceed ``MAX_PRODUCT`` and are sampled),
the form is reported as **not explored** — a warning, never a pass — and
nothing is refused on what was not seen.

What it does not see: a wrong ``all``/``any`` between two criteria that are
both required anyway — each alternative still approves, only never alone;
with ``all`` each one is met in every approval, with ``any`` the form
approves on either — is seen (check 2), but a group written ``any`` where
``all`` was meant is not: every alternative approves on its own, as written.
Such errors of content, like a reversed comparison, only the policy's worked
examples catch.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

from builder.verification import explore
from builder.verification.explore import Explorer, Leaf, explore_forms
from builder.verification.paths import alternative_groups, approval_paths, taken_paths
from policies.generated import PLANNED_MONTHS, REQUESTED_QUANTITY, THERAPY_START
from policies.index import reads
from policies.model import Policy

# What a refusal of these checks suggests to the author.
_CAUSES = (
    "(a routing error: an enable_when on the wrong answer, or `logic: all` where `any` was meant)"
)


@dataclass
class Routing:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_DONE: weakref.WeakKeyDictionary[Explorer, Routing] = weakref.WeakKeyDictionary()


def routing(explorer: Explorer) -> Routing:
    """The routing problems of one form, and what was not explored (made
    once per explorer: ``dtr check`` prints the warnings after verifying)."""
    if explorer not in _DONE:
        _DONE[explorer] = _routing(explorer)
    return _DONE[explorer]


def exploration_warnings(policy: Policy, source: str) -> list[str]:
    """What the build could not explore in a policy's forms, each as
    ``FILE: FORM: …not explored…`` (printed by ``dtr check`` and ``dtr build``
    beside "verified": a warning, never a pass)."""
    # one warning of a criterion several forms share, naming each form
    found: dict[str, list[str]] = {}
    for explorer in explore_forms(policy):
        for warning in routing(explorer).warnings:
            found.setdefault(warning, []).append(explorer.package.questionnaire["id"])
    return [f"{source}: {', '.join(forms)}: {warning}" for warning, forms in found.items()]


def _routing(explorer: Explorer) -> Routing:
    found = Routing()
    form = explorer.package.questionnaire["id"]
    found.warnings += sampled(explorer)
    result = explorer.run()
    if not result.complete:
        found.warnings.append(
            "not explored: the exploration stopped at its bound of"
            f" {explore.MAX_EVALUATIONS} scorings; the requests past it (their approvals, pends"
            " and routing) are not verified"
        )
        return found
    leaves = [*result.approvals, *result.others]
    unchanging, unexplored = _unchanging(explorer, leaves)
    if unexplored:
        found.warnings.append(
            f"not explored: the bound of {explore.MAX_EVALUATIONS} scorings was reached"
            f" before {', '.join(unexplored)} could be shown to change the determination"
        )
    section = _sections(explorer)
    derived = {
        name: [
            d.name for d in explorer.policy.derived if name in reads(explorer.policy, d.expression)
        ]
        for name in explorer.questions
    }
    for name, asked in unchanging:
        where = f"{section.get(name, name)}: {name}"
        if derived[name]:
            # its answers were chosen by the constants it is compared with, not
            # by those of what is computed from it: no answer tried proves none would
            found.warnings.append(
                f"{where}: not explored: no answer tried changes the determination, but it is"
                f" read through {', '.join(derived[name])}, whose constants its answers do not"
                " reach (give it realistic bounds: `min_value`, `max_value`)"
            )
        elif asked:
            found.problems.append(
                f"{form}: {where}: no answer to it changes the determination (outcome, period,"
                f" quantity or cited sections) in any of the {_count(leaves, 'end state')}"
                f" explored {_CAUSES}; a question kept only for the record is marked"
                " `record_only: true`"
            )
        else:
            found.problems.append(
                f"{form}: {where}: asked in none of the {_count(leaves, 'end state')} explored"
                f" {_CAUSES}"
            )
    found.problems += [f"{form}: {p}" for p in _untaken(explorer, leaves)]
    return found


def sampled(explorer: Explorer) -> list[str]:
    """The criteria whose ``met`` is checked on a sample of its answers'
    combinations (more than ``MAX_PRODUCT``), not on all of them."""
    out = []
    for criterion in explorer.criteria():
        if criterion.met is None:
            continue
        names = [n for n in reads(explorer.policy, criterion.met) if n in explorer.domains]
        combinations = math.prod(len(explorer.domains[n]) + 1 for n in names)
        if combinations > explore.MAX_PRODUCT:
            out.append(
                f"{criterion.id}: met: not explored: {combinations} combinations of its"
                f" answers, over the bound of {explore.MAX_PRODUCT}; checked on"
                f" a sample of {explore.SAMPLE} of them"
            )
    return out


def determination(explorer: Explorer, evaluation: Any, answers: dict[str, list[Any]]) -> Any:
    """What a determination says, as far as routing can change it: its
    outcome and cited sections; for an approval, what its period and
    quantity are made of (the met branches' shortest length, the planned
    length and start of therapy, the requested quantity and the limits kept)."""
    outcome = explorer.outcome(evaluation)
    said: tuple[Any, ...] = (
        outcome,
        tuple(evaluation.unmet),
        tuple(evaluation.review),
        tuple(evaluation.investigational),
        tuple(evaluation.documents),
    )
    if outcome != "approved":
        return said
    term = explorer.policy.authorization.term(explorer.kind)
    met = evaluation.met_on_documents | {
        s for s, status in evaluation.statuses.items() if status == "met"
    }
    months = min((b.months for b in term.branches if b.section in met), default=term.months)

    def answer(name: str) -> Any:
        link = explorer.package.link_of.get(name)
        return repr(answers.get(link)) if link else None

    return (
        *said,
        months,
        answer(PLANNED_MONTHS),
        answer(THERAPY_START),
        answer(REQUESTED_QUANTITY),
        tuple(sorted(evaluation.limits.items())),
    )


def _unchanging(explorer: Explorer, leaves: list[Leaf]) -> tuple[list[tuple[str, bool]], list[str]]:
    """The questions no answer of which changes the determination in any end
    state (each with whether it was asked at all), and those the bound left
    unexplored."""
    candidates = [
        name
        for name, question in explorer.questions.items()
        if not question.record_only and len(explorer.domains[name]) >= 2
    ]
    search = _Search(explorer, explore.MAX_EVALUATIONS - explorer.run().evaluations)
    changes: set[str] = set()
    asked: set[str] = set()
    for leaf in leaves:
        for name in candidates:
            if name in changes:
                continue
            if search.spent > search.budget:
                return [], [n for n in candidates if n not in changes]
            link = explorer.package.link_of[name]
            given = leaf.answers.get(link)
            if given is None and not leaf.evaluation.enabled.get(link):
                continue
            asked.add(name)
            domain = [[value.value] for value in explorer.domains[name]]
            first = given if given is not None else domain[0]
            if any(search.changes(leaf.answers, link, first, other) for other in domain):
                changes.add(name)
    return [(n, n in asked) for n in candidates if n not in changes], []


@dataclass
class _Search:
    """Whether one answer changed into another changes the determination,
    the other answers kept: where the changed answer leaves the request
    pending, the questions it then asks are answered too (each value of
    each, depth first, at most ``STEPS`` scorings), and the same answers
    are given with the first answer."""

    explorer: Explorer
    budget: int
    spent: int = 0
    STEPS = 64

    def changes(
        self, answers: dict[str, list[Any]], link: str, first: list[Any], other: list[Any]
    ) -> bool:
        if other == first:
            return False
        return self._complete(answers, link, first, other, self.spent + self.STEPS)

    def _complete(
        self,
        answers: dict[str, list[Any]],
        link: str,
        first: list[Any],
        other: list[Any],
        until: int,
    ) -> bool:
        explorer = self.explorer
        changed = {**answers, link: other}
        after = explorer.evaluate(changed)
        self.spent += 1
        if explorer.outcome(after) != "pended":
            kept = {**answers, link: first}
            before = explorer.evaluate(kept)
            self.spent += 1
            if explorer.outcome(before) == "pended":
                return False  # the same answers leave the first one waiting
            return bool(
                determination(explorer, before, kept) != determination(explorer, after, changed)
            )
        by_link = {info.link_id: n for n, info in explorer.package.index.questions.items()}
        asked = [q for q in after.missing_questions if q not in changed and q in by_link]
        if not asked:
            return False
        ask = asked[0]
        for value in explorer.domains[by_link[ask]]:
            if self.spent >= until or self.spent > self.budget:
                return False
            more = {**answers, ask: [value.value]}
            if self._complete(more, link, first, other, until):
                return True
        return False


def _untaken(explorer: Explorer, leaves: list[Leaf]) -> list[str]:
    """The approval paths no approval explored goes through on its own."""
    policy, kind, tree = explorer.policy, explorer.kind, explorer.package.tree
    paths = approval_paths(policy, kind, tree)
    siblings = {
        member: [other for other in group if other != member]
        for group in alternative_groups(tree)
        for member in group
    }
    approvals = [leaf for leaf in leaves if _approvable(leaf)]
    alone: set[str] = set()
    together: dict[str, set[str]] = {}
    for leaf in approvals:
        statuses = leaf.evaluation.statuses
        for path in taken_paths(policy, kind, tree, statuses):
            met = [s for s in siblings.get(path, []) if statuses.get(s) == "met"]
            if met:
                together.setdefault(path, set()).update(met)
            else:
                alone.add(path)
    problems = []
    for path in paths:
        if path in alone:
            continue
        if path in together:
            problems.append(
                f"{path}: approves only together with {', '.join(sorted(together[path]))}, never"
                f" on its own, in the {_count(approvals, 'approval')} explored (it is met only"
                " where another of its group is: their conditions overlap, or it is enabled on"
                " the wrong answer)"
            )
        else:
            problems.append(
                f"{path}: no approval goes through it in the {_count(approvals, 'approval')}"
                f" explored {_CAUSES}"
            )
    return problems


def _approvable(leaf: Leaf) -> bool:
    """Approved, or met but for what a pharmacist must read (as the worked
    examples' coverage counts an approval)."""
    evaluation = leaf.evaluation
    return leaf.outcome == "approved" or (
        leaf.outcome == "review" and not evaluation.unmet and not evaluation.missing
    )


def _sections(explorer: Explorer) -> dict[str, str]:
    """Each question's section: the criterion that asks it."""
    return {q.name: c.id for c in explorer.criteria() for q in c.questions}


def _count(items: list[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) != 1)}"
