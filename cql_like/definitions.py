"""Named, CQL-style FHIRPath definitions, generated from the policy data.

For one policy and request kind this module writes every definition the
scorer evaluates — nothing is written a second time by hand:

- ``define "I.D.3": %platinum_progressed or %platinum_intolerant`` — a
  criterion's scoring definition, straight from its ``met`` in the policy;
- ``define "I.D (own)"`` / ``"I.D (children)"`` / ``"I.D"`` — a criterion with
  children: its own condition, its children combined (``and``/``or``), and the
  two combined;
- ``define "enabled I.D.3.platinum_intolerant"`` — an item's enableWhen,
  translated from the Questionnaire itself (or its enableWhenExpression, read
  back through the item's answer variables);
- ``define "II.C applies"`` — an investigational condition.

Answers are the variables ``%question_name`` (a list of answer values);
results of other definitions are variables named after them
(``%`I.D.3```). The evaluation date is ``%as_of``. The same text is shipped
in a FHIR ``Library`` (content type ``text/fhirpath``) that the Questionnaire
references with ``cqf-library``, so the package carries its own logic.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Literal

from cql_like.gateway import variable
from policies.expressions import join_terms
from policies.index import PolicyIndex, index_policy
from policies.model import AnyOf, Criterion, Node, Policy, RequestKind, expression_variables
from policies.names import library_id, library_url, questionnaire_version
from policies.tree import applicable_limits, limit_guard, product_limits, request_tree, within_limit
from questionnaires.checks import iter_items

Role = Literal[
    "criterion", "own", "children", "any_of", "request", "enabled", "applies", "derived", "limit"
]
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
CONTENT_TYPE = "text/fhirpath"


@dataclass(frozen=True)
class Definition:
    name: str
    expression: str
    role: Role
    section: str | None = None


def node_name(node: Node) -> str:
    return node.label if isinstance(node, AnyOf) else node.id


def own_name(criterion: Criterion) -> str:
    return f"{criterion.id} (own)"


def children_name(criterion: Criterion) -> str:
    return f"{criterion.id} (children)"


def enabled_name(link_id: str) -> str:
    return f"enabled {link_id}"


def applies_name(section: str) -> str:
    return f"{section} applies"


def request_name(kind: RequestKind) -> str:
    return f"{kind.capitalize()} request criteria"


def limit_applies_name(number: int) -> str:
    return f"QL limit {number + 1} applies"


def limit_within_name(number: int) -> str:
    return f"QL limit {number + 1} kept"


def _join(names: list[str], operator: str) -> str:
    return join_terms([variable(n) for n in names], operator)


def _paren(expression: str) -> str:
    return f"({expression})"


def criteria_definitions(tree: list[Node], kind: RequestKind) -> list[Definition]:
    """Definitions of a criteria tree, children before parents (so a
    definition only reads results already defined above it)."""
    out: list[Definition] = []

    def visit(node: Node) -> None:
        if isinstance(node, AnyOf):
            for option in node.any_of:
                visit(option)
            names = [option.id for option in node.any_of]
            out.append(Definition(node.label, _join(names, "or"), "any_of"))
            return
        for child in node.children:
            visit(child)
        if not node.children:
            assert node.met is not None  # guaranteed by the policy model
            out.append(Definition(node.id, node.met, "criterion", node.id))
            return
        operator = "and" if node.logic == "all" else "or"
        joined = _join([node_name(c) for c in node.children], operator)
        if node.met is None:
            out.append(Definition(node.id, joined, "criterion", node.id))
            return
        out.append(Definition(children_name(node), joined, "children", node.id))
        out.append(Definition(own_name(node), node.met, "own", node.id))
        combined = _join([own_name(node), children_name(node)], node.combine)
        out.append(Definition(node.id, combined, "criterion", node.id))

    for node in tree:
        visit(node)
    out.append(
        Definition(request_name(kind), _join([node_name(n) for n in tree], "and"), "request")
    )
    return out


def coding_test(answer: str, code: str) -> str:
    # The input checks admit only codings among the item's answer options,
    # whose codes are unique, so the code alone identifies the answer.
    return f"{answer}.code = '{code}'"


SDC_ENABLE_WHEN_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression"
)


_VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
_ANSWER_OF = re.compile(r"%resource\.repeat\(item\)\.where\(linkId='([^']+)'\)\.answer\.value")


def enabling_expression(item: dict[str, Any]) -> str | None:
    """An item's SDC ``enableWhenExpression`` as written on the form (FHIRPath
    over its ``variable`` extensions); None when it has none."""
    return next(
        (
            e["valueExpression"]["expression"]
            for e in item.get("extension", [])
            if e.get("url") == SDC_ENABLE_WHEN_EXPRESSION
        ),
        None,
    )


def expression_answers(item: dict[str, Any]) -> dict[str, str]:
    """The item's variables that hold an answer: variable name → linkId."""
    found = {}
    for extension in item.get("extension", []):
        if extension.get("url") != _VARIABLE:
            continue
        value = extension["valueExpression"]
        match = _ANSWER_OF.fullmatch(value["expression"])
        if match:
            found[value["name"]] = match.group(1)
    return found


def _scorer_form(item: dict[str, Any], written: str, index: PolicyIndex) -> str:
    """The enableWhenExpression over the scorer's ``%name`` variables: each
    of the item's answer variables renamed to the question it reads. A
    variable the item does not bind to an answer is refused (the scorer
    would read it as empty, a client as something else)."""
    names = {info.link_id: name for name, info in index.questions.items()}
    bound = {variable: names[link] for variable, link in expression_answers(item).items()}

    def rename(match: re.Match[str]) -> str:
        variable_ = match.group(1)
        if variable_ not in bound:
            raise ValueError(
                f"{item['linkId']}: enableWhenExpression reads %{variable_}, which no variable"
                " of the item binds to an answer"
            )
        return variable(bound[variable_])

    return re.sub(r"%([A-Za-z][A-Za-z0-9]*)\b", rename, written)


def enable_when_expression(item: dict[str, Any], index: PolicyIndex) -> str:
    """An item's enableWhen as FHIRPath over the answers. A condition on an
    unanswered question is false (never unknown), as FHIR defines it; so is
    an enableWhenExpression that is empty for want of an answer."""
    written = enabling_expression(item)
    if written is not None:
        return _scorer_form(item, written, index)
    names = {info.link_id: name for name, info in index.questions.items()}
    parts = []
    for condition in item["enableWhen"]:
        answer = variable(names[condition["question"]])
        operator = condition["operator"]
        key = next(k for k in condition if k.startswith("answer"))
        value = condition[key]
        if operator == "exists":
            parts.append(f"{answer}.exists()" if value else f"{answer}.empty()")
            continue
        if key == "answerCoding":
            # compare codes (cheaper in fhirpathpy than a where() over the
            # answers); `contains`: a multi-select matches when any answer does
            same = f"{answer}.code contains '{value['code']}'"
            test = same if operator == "=" else f"({same}).not()"
            parts.append(f"({answer}.exists() and {test})")
            continue
        else:
            literal = (
                str(value).lower()
                if isinstance(value, bool)
                else f"@{value}"
                if key == "answerDate"
                else f"'{value}'"
                if isinstance(value, str)
                else str(value)
            )
            test = f"{answer} {operator} {literal}"
        parts.append(f"({answer}.exists() and {test})")
    joiner = " or " if item.get("enableBehavior") == "any" else " and "
    return joiner.join(parts)


def definitions(
    policy: Policy, kind: RequestKind, questionnaire: dict[str, Any], drug: str | None = None
) -> list[Definition]:
    """Every definition for requests of ``kind``, in evaluation order: derived
    values first (criteria read them), enableWhen, investigational
    conditions, quantity limits, then the criteria."""
    index = index_policy(policy, kind, drug)
    out = [Definition(value.name, value.expression, "derived") for value in policy.derived]
    out += [
        Definition(enabled_name(item["linkId"]), enable_when_expression(item, index), "enabled")
        for item, _ in iter_items(questionnaire["item"])
        if item.get("enableWhen") or enabling_expression(item) is not None
    ]
    if policy.investigational is not None:
        for condition in policy.investigational.all_conditions():
            if condition.answer_of is not None:
                if condition.answer_of not in index.questions:
                    continue
                expression = coding_test(variable(condition.answer_of), condition.id)
            else:
                assert condition.applies is not None
                expression = condition.applies
            out.append(Definition(applies_name(condition.id), expression, "applies", condition.id))
    limits = applicable_limits(policy, drug)
    several = len(product_limits(limits)) > 1
    for number, limit in enumerate(limits):
        guard = limit_guard(limit, several)
        out.append(Definition(limit_applies_name(number), guard or "true", "limit", "QL"))
        out.append(Definition(limit_within_name(number), within_limit(limit), "limit", "QL"))
    out.extend(criteria_definitions(request_tree(policy, kind, drug), kind))
    return out


def library_text(
    policy: Policy, kind: RequestKind, questionnaire: dict[str, Any], drug: str | None = None
) -> str:
    index = index_policy(policy, kind, drug)
    lines = [
        f"// {questionnaire['title']}",
        "// FHIRPath definitions, CQL-style. Evaluate with the FHIR R4 model;",
        "// %as_of is the evaluation date; %name is the list of answers to the",
        "// item below (empty for a name declared absent: not asked on this form);",
        "// a definition's name is also the variable of its result.",
        f"library \"{library_id(policy, kind, drug)}\" version '{questionnaire_version(policy)}'",
        "",
    ]
    for name, info in index.questions.items():
        lines.append(f"answer {name}: '{info.link_id}'")
    written = definitions(policy, kind, questionnaire, drug)
    # a name a definition reads that this form never asks (an investigational
    # condition worded for both request types reads the other form's
    # question): declared, so an evaluator is told it is always empty here
    # instead of meeting an undefined variable
    known = set(index.questions) | {d.name for d in written}
    read = set().union(*(expression_variables(d.expression) for d in written))
    for name in sorted(read - known):
        lines.append(f"absent {name}")
    lines.append("")
    for definition in written:
        lines.append(f'define "{definition.name}": {definition.expression}')
    return "\n".join(lines) + "\n"


def library(
    policy: Policy, kind: RequestKind, questionnaire: dict[str, Any], drug: str | None = None
) -> dict[str, Any]:
    """The FHIR Library that carries the definitions of one Questionnaire."""
    text = library_text(policy, kind, questionnaire, drug)
    identity = policy.policy
    return {
        "resourceType": "Library",
        "id": library_id(policy, kind, drug),
        "url": library_url(policy, kind, drug),
        "version": questionnaire_version(policy),
        "name": questionnaire["name"] + "Logic",
        "title": f"{questionnaire['title']}: scoring definitions",
        "status": "active",
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        **({"date": identity.date_text} if identity.date_text else {}),
        "publisher": identity.payer.name,
        "description": (
            "Named FHIRPath definitions (one per policy section, enableWhen and investigational"
            f" condition) that decide a response to {questionnaire['url']}|"
            f"{questionnaire['version']}."
        ),
        "content": [
            {
                "contentType": CONTENT_TYPE,
                "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            }
        ],
    }
