"""The shared index of one form: each question by name with its linkId,
options (investigational answers added) and the sections that read it. The
emitter lays items out from it and the scorer reads answers through it."""

from __future__ import annotations

from dataclasses import dataclass, field

from policies.model import (
    Criterion,
    Investigational,
    Option,
    Policy,
    Question,
    RequestKind,
    expression_variables,
    walk,
)
from policies.names import (
    question_link_id,
    questionnaire_version,
    value_set_url,
)
from policies.tree import (
    request_tree,
)


@dataclass(frozen=True)
class QuestionInfo:
    """Where a question stands in the generated Questionnaire and what it captures."""

    question: Question
    link_id: str
    section: str
    options: tuple[Option, ...]
    sections: tuple[str, ...]


@dataclass
class PolicyIndex:
    """Lookups the builder and the scorer share: questions by name, their
    linkIds, options (with investigational answers added) and cited sections."""

    policy: Policy
    drug: str | None = None
    questions: dict[str, QuestionInfo] = field(default_factory=dict)
    section_text: dict[str, str] = field(default_factory=dict)

    def value_set(self, name: str) -> str:
        """The ``url|version`` of a coded question's ValueSet."""
        return f"{value_set_url(self.policy, name, self.drug)}|{questionnaire_version(self.policy)}"

    def coding(self, option: Option) -> dict[str, str]:
        if option.section is not None:
            return {
                "system": self.policy.policy.sections_system,
                "code": option.section,
                "display": option.display,
            }
        return {
            "system": option.system or self.policy.policy.codes_system,
            "code": option.code or "",
            "display": option.display,
        }

    def section_coding(self, section: str) -> dict[str, str]:
        return {
            "system": self.policy.policy.sections_system,
            "code": section,
            "display": self.section_text[section],
        }


def index_policy(policy: Policy, kind: RequestKind, drug: str | None = None) -> PolicyIndex:
    index = PolicyIndex(policy, drug)
    tree = request_tree(policy, kind, drug)
    criteria = list(walk(tree))
    for criterion in criteria:
        index.section_text[criterion.id] = criterion.text
    investigational = policy.investigational
    extra_options: dict[str, list[Option]] = {}
    if investigational is not None:
        index.section_text[investigational.id] = investigational.text
        for condition in investigational.all_conditions():
            index.section_text.setdefault(condition.id, condition.text)
            if condition.answer_of:
                extra_options.setdefault(condition.answer_of, []).append(
                    Option(section=condition.id, display=condition.display or condition.text)
                )
    readers = _readers(policy, criteria, investigational)
    for criterion in criteria:
        for question in criterion.questions:
            # a question only read by conditions, or record-only, carries its own section
            sections = tuple(readers.get(question.name, ())) or (criterion.id,)
            index.questions[question.name] = QuestionInfo(
                question=question,
                link_id=question_link_id(criterion.id, question.name),
                section=criterion.id,
                options=(*question.options, *extra_options.get(question.name, [])),
                sections=sections,
            )
    return index


def reads(policy: Policy, expression: str | None) -> set[str]:
    """The questions an expression reads, through the derived values it reads."""
    derived = {value.name: value for value in policy.derived}
    names: set[str] = set()
    pending = list(expression_variables(expression or ""))
    while pending:
        name = pending.pop()
        if name in names:
            continue
        names.add(name)
        if name in derived:
            pending.extend(expression_variables(derived[name].expression))
    return names - set(derived)


def _readers(
    policy: Policy, criteria: list[Criterion], investigational: Investigational | None
) -> dict[str, list[str]]:
    """Question name → the sections whose definitions read its answer."""
    readers: dict[str, list[str]] = {}
    for criterion in criteria:
        for name in sorted(reads(policy, criterion.met)):
            readers.setdefault(name, []).append(criterion.id)
    if investigational is not None:
        for condition in investigational.all_conditions():
            names = reads(policy, condition.applies)
            if condition.answer_of:
                names.add(condition.answer_of)
            for name in sorted(names):
                readers.setdefault(name, []).append(condition.id)
    return readers
