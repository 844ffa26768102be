"""Input checks on a submitted QuestionnaireResponse, before any scoring.

The response is parsed as JSON, validated as an R4 QuestionnaireResponse by
``fhir.resources``, matched to the Questionnaire it names, then walked item by
item against that Questionnaire: unknown linkIds, items out of place, answers
of the wrong type or outside the answer options or bounds, several answers to
a single-answer item, and answers to items that are not enabled are each an
issue naming the item. What passes is indexed once, by linkId, for the
engine. Nothing from the response is ever evaluated as an expression.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from pydantic import ValidationError

from builder.checks import describe_condition
from cql_like.engine import CompiledRequest
from scoring.outcome import InvalidInput, Issue

# item type → the answer value[x] it takes
VALUE_KEY = {
    "boolean": "valueBoolean",
    "integer": "valueInteger",
    "decimal": "valueDecimal",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "string": "valueString",
    "text": "valueString",
    "choice": "valueCoding",
    "attachment": "valueAttachment",
    "quantity": "valueQuantity",
}
ACCEPTED_STATUS = {"in-progress", "completed", "amended"}


@dataclass(frozen=True)
class Answers:
    """The answers of one checked response, by linkId (values as JSON)."""

    by_link: dict[str, list[Any]]
    enabled: dict[str, bool]


def parse_json(body: bytes | str) -> dict[str, Any]:
    """JSON text → a resource dict; malformed JSON is an issue with its position."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            [Issue("invalid", f"the body is not UTF-8 text ({exc.reason})")], 400
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            [
                Issue(
                    "invalid", f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                )
            ],
            400,
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            [Issue("invalid", "the body must be a JSON object (a FHIR resource)")], 400
        )
    return data


def check_structure(resource: Mapping[str, Any]) -> None:
    """The resource is an R4 QuestionnaireResponse (structure only)."""
    kind = resource.get("resourceType")
    if kind != "QuestionnaireResponse":
        raise InvalidInput(
            [Issue("invalid", f"expected a QuestionnaireResponse, got resourceType {kind!r}")]
        )
    try:
        QuestionnaireResponse.model_validate(resource)
    except ValidationError as exc:
        issues = [
            Issue("structure", f"{_location(e['loc'])}: {e['msg']}", _location(e["loc"]))
            for e in exc.errors()
        ]
        raise InvalidInput(issues) from None
    status = resource.get("status")
    if status not in ACCEPTED_STATUS:
        raise InvalidInput(
            [
                Issue(
                    "business-rule",
                    f"status {status!r} cannot be scored"
                    f" (accepted: {', '.join(sorted(ACCEPTED_STATUS))})",
                    "QuestionnaireResponse.status",
                )
            ]
        )


def _location(loc: tuple[int | str, ...]) -> str:
    path = "QuestionnaireResponse"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def check_answers(package: CompiledRequest, resource: Mapping[str, Any]) -> Answers:
    """Walk the response against its Questionnaire; index the answers by linkId."""
    issues: list[Issue] = []
    answers: dict[str, list[Any]] = {}
    _walk(package, resource.get("item", []), None, "QuestionnaireResponse", answers, issues)
    if issues:
        raise InvalidInput(issues)
    variables = package.answer_variables(answers)
    enabled = package.enablement(resource, variables)
    for link_id, values in answers.items():
        if values and not enabled.get(link_id, False):
            issues.append(
                Issue(
                    "business-rule",
                    f"item {link_id} is answered but not enabled: its enableWhen conditions"
                    f" ({_disabled_by(package, link_id, enabled)}) do not hold for this response,"
                    " so its answer must be removed",
                    f"QuestionnaireResponse.item.where(linkId='{link_id}')",
                )
            )
    if issues:
        raise InvalidInput(issues)
    return Answers(answers, enabled)


def _disabled_by(package: CompiledRequest, link_id: str, enabled: dict[str, bool]) -> str:
    """The enableWhen that disables an item: its own, or its nearest disabled group's."""
    spec = package.items[link_id]
    while spec.parent is not None and not enabled.get(spec.parent, True):
        spec = package.items[spec.parent]
    item = package.questionnaire_items[spec.link_id]
    joiner = " or " if item.get("enableBehavior") == "any" else " and "
    conditions = joiner.join(describe_condition(c) for c in item.get("enableWhen", []))
    return f"{spec.link_id}: {conditions}" if spec.link_id != link_id else conditions


def _walk(
    package: CompiledRequest,
    items: list[dict[str, Any]],
    parent: str | None,
    path: str,
    answers: dict[str, list[Any]],
    issues: list[Issue],
) -> None:
    for position, item in enumerate(items):
        link_id = str(item.get("linkId"))
        here = f"{path}.item[{position}]"
        spec = package.items.get(link_id)
        if spec is None:
            issues.append(
                Issue(
                    "not-found",
                    f"unknown linkId {link_id!r}: {package.questionnaire['url']} has no such item",
                    here,
                )
            )
            continue
        if spec.parent != parent:
            where = f"inside group {spec.parent}" if spec.parent else "at the top level"
            issues.append(Issue("structure", f"item {link_id} belongs {where}", here))
            continue
        if link_id in answers:
            issues.append(Issue("structure", f"item {link_id} appears more than once", here))
            continue
        values = item.get("answer", [])
        if spec.type == "group":
            answers[link_id] = []
            if values:
                issues.append(Issue("structure", f"group {link_id} cannot have answers", here))
            _walk(package, item.get("item", []), link_id, here, answers, issues)
            continue
        if item.get("item"):
            issues.append(Issue("structure", f"question {link_id} has no nested items", here))
        if len(values) > 1 and not spec.repeats:
            issues.append(
                Issue("structure", f"item {link_id} takes one answer, got {len(values)}", here)
            )
            continue
        answers[link_id] = []
        for number, answer in enumerate(values):
            value = _answer_value(spec, answer, f"{here}.answer[{number}]", issues)
            if value is None:
                continue
            if value in answers[link_id]:
                issues.append(Issue("structure", f"item {link_id} has the same answer twice", here))
                continue
            answers[link_id].append(value)


def _answer_value(spec: Any, answer: dict[str, Any], here: str, issues: list[Issue]) -> Any:
    link_id = spec.link_id
    expected = VALUE_KEY.get(spec.type, f"an answer to a {spec.type} item")
    given = [key for key in answer if key.startswith("value")]
    if answer.get("item"):
        issues.append(Issue("structure", f"the answer to {link_id} has no nested items", here))
    if given != [expected]:
        got = given[0] if given else "no value"
        issues.append(
            Issue(
                "value",
                f"item {link_id} is a {spec.type} question: expected {expected}, got {got}",
                here,
            )
        )
        return None
    value = answer[expected]
    if spec.type == "choice":
        pair = (value.get("system"), value.get("code"))
        if pair not in spec.options:
            offered = ", ".join(sorted(code for _system, code in spec.options))
            issues.append(
                Issue(
                    "value",
                    f"item {link_id}: {pair[1]!r} from {pair[0]!r} is not one of its answer options"
                    f" ({offered})",
                    here,
                )
            )
            return None
        return {"system": pair[0], "code": pair[1]}
    if spec.type in ("integer", "decimal"):
        if spec.min_value is not None and value < spec.min_value:
            issues.append(
                Issue(
                    "value",
                    f"item {link_id}: {value} is below the minimum {spec.min_value:g}",
                    here,
                )
            )
            return None
        if spec.max_value is not None and value > spec.max_value:
            issues.append(
                Issue(
                    "value",
                    f"item {link_id}: {value} is above the maximum {spec.max_value:g}",
                    here,
                )
            )
            return None
    return value
