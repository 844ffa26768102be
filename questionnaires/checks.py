"""Checks on a generated Questionnaire that ``fhir.resources`` does not make.

``fhir.resources.R4B`` checks structure (element names and types), not the
Questionnaire invariants nor the references between items. These checks are
ours: unique linkIds (que-2), enableWhen naming an existing, earlier item of a
fitting type and operator (que-7), enableBehavior exactly when there are
several conditions (que-12), coded options with a system, groups with items
(que-1), and an ``item.code`` on every question that captures a criterion.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

ITEM_TYPES = {
    "group", "display", "boolean", "decimal", "integer", "date", "dateTime", "time",
    "string", "text", "url", "choice", "open-choice", "attachment", "reference", "quantity",
}  # fmt: skip
ANSWER_KEYS = {
    "boolean": {"answerBoolean"},
    "decimal": {"answerDecimal"},
    "integer": {"answerInteger"},
    "date": {"answerDate"},
    "dateTime": {"answerDateTime"},
    "time": {"answerTime"},
    "string": {"answerString"},
    "text": {"answerString"},
    "url": {"answerString"},
    "choice": {"answerCoding"},
    "open-choice": {"answerCoding", "answerString"},
    "quantity": {"answerQuantity"},
    "reference": {"answerReference"},
}
ORDERED_TYPES = {"decimal", "integer", "date", "dateTime", "time", "quantity", "string", "text"}


class QuestionnaireError(ValueError):
    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{name}: " + "; ".join(problems))


def iter_items(items: list[dict[str, Any]], depth: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    for item in items:
        yield item, depth
        yield from iter_items(item.get("item", []), depth + 1)


def questionnaire_problems(
    questionnaire: dict[str, Any], value_sets: Mapping[str, dict[str, Any]] | None = None
) -> list[str]:
    """Every problem found in a Questionnaire (an empty list when it is sound);
    ``value_sets`` (by ``url|version``) are those published with it."""
    problems: list[str] = []
    # imported here: the R4 models are the build's check, not the scorer's
    from fhir.resources.R4B.questionnaire import Questionnaire
    from pydantic import ValidationError

    try:
        Questionnaire.model_validate(questionnaire)
    except ValidationError as exc:
        problems.extend(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if questionnaire.get("status") not in {"draft", "active", "retired", "unknown"}:
        problems.append(f"status {questionnaire.get('status')!r} is not a publication status")

    order: dict[str, int] = {}
    items: dict[str, dict[str, Any]] = {}
    descendants: dict[str, set[str]] = {}
    for position, (item, _depth) in enumerate(iter_items(questionnaire.get("item", []))):
        link_id = str(item.get("linkId"))
        if link_id in items:
            problems.append(f"linkId {link_id} is not unique")
        items[link_id] = item
        order[link_id] = position
        descendants[link_id] = {child["linkId"] for child, _ in iter_items(item.get("item", []))}

    offered = {
        link_id: _offered(link_id, item, value_sets or {}, problems)
        for link_id, item in items.items()
    }
    for link_id, item in items.items():
        problems.extend(_item_problems(link_id, item, items, order, descendants, offered))
    return problems


def _offered(
    link_id: str,
    item: dict[str, Any],
    value_sets: Mapping[str, dict[str, Any]],
    problems: list[str],
) -> list[dict[str, Any]]:
    """The codings a choice item offers: its answerOption, or the codes of the
    published ValueSet it names (version-specific, as DTR requires)."""
    canonical = item.get("answerValueSet")
    if canonical is None:
        return [o.get("valueCoding") or {} for o in item.get("answerOption", [])]
    if "answerOption" in item:
        problems.append(f"{link_id}: answerOption and answerValueSet together (que-4)")
    if not isinstance(canonical, str) or "|" not in canonical or canonical.startswith("#"):
        problems.append(f"{link_id}: answerValueSet must be a published url|version")
        return []
    value_set = value_sets.get(canonical)
    if value_set is None:
        problems.append(f"{link_id}: answerValueSet {canonical} is not published with it")
        return []
    return [
        {"system": include.get("system"), "code": concept.get("code")}
        for include in value_set.get("compose", {}).get("include", [])
        for concept in include.get("concept", [])
    ]


def _item_problems(
    link_id: str,
    item: dict[str, Any],
    items: dict[str, dict[str, Any]],
    order: dict[str, int],
    descendants: dict[str, set[str]],
    offered: dict[str, list[dict[str, Any]]],
) -> Iterator[str]:
    item_type = item.get("type")
    if item_type not in ITEM_TYPES:
        yield f"{link_id}: type {item_type!r} is not a Questionnaire item type"
    if item_type == "group" and not item.get("item"):
        yield f"{link_id}: a group must have items (que-1)"
    if item_type == "display" and (item.get("item") or "required" in item):
        yield f"{link_id}: a display item has no items and is not required (que-1, que-6)"
    if item_type in ("choice", "open-choice"):
        options = offered[link_id]
        if not options:
            yield f"{link_id}: a choice item needs answer options"
        for coding in options:
            if not coding.get("system") or not coding.get("code"):
                yield f"{link_id}: every answer option must be a coding with a system and a code"
    if item_type not in ("group", "display") and not item.get("code"):
        yield f"{link_id}: a question must carry the code of the section it captures"
    conditions = item.get("enableWhen", [])
    if len(conditions) > 1 and "enableBehavior" not in item:
        yield f"{link_id}: several enableWhen conditions need enableBehavior (que-12)"
    if len(conditions) < 2 and "enableBehavior" in item:
        yield f"{link_id}: enableBehavior without several enableWhen conditions (que-12)"
    for condition in conditions:
        yield from _condition_problems(link_id, condition, items, order, descendants, offered)


def _condition_problems(
    link_id: str,
    condition: dict[str, Any],
    items: dict[str, dict[str, Any]],
    order: dict[str, int],
    descendants: dict[str, set[str]],
    offered: dict[str, list[dict[str, Any]]],
) -> Iterator[str]:
    target_id = str(condition.get("question"))
    target = items.get(target_id)
    if target is None:
        yield f"{link_id}: enableWhen names unknown item {target_id}"
        return
    if order[target_id] >= order[link_id] or target_id in descendants[link_id]:
        yield f"{link_id}: enableWhen must name an item that comes before it, not {target_id}"
    answer_keys = [key for key in condition if key.startswith("answer")]
    if len(answer_keys) != 1:
        yield f"{link_id}: enableWhen needs exactly one answer[x]"
        return
    operator = condition.get("operator")
    answer_key = answer_keys[0]
    target_type = target.get("type")
    if target_type in ("group", "display"):
        yield f"{link_id}: enableWhen cannot depend on {target_type} item {target_id}"
        return
    if operator == "exists":
        if answer_key != "answerBoolean":
            yield f"{link_id}: the exists operator takes answerBoolean (que-7)"
        return
    if answer_key not in ANSWER_KEYS.get(str(target_type), set()):
        yield f"{link_id}: {answer_key} does not fit {target_type} item {target_id}"
    if operator not in ("=", "!=") and target_type not in ORDERED_TYPES:
        yield f"{link_id}: operator {operator} does not apply to {target_type} item {target_id}"
    if answer_key == "answerCoding":
        wanted = condition["answerCoding"]
        if not any(
            c.get("system") == wanted.get("system") and c.get("code") == wanted.get("code")
            for c in offered[target_id]
        ):
            code = wanted.get("code")
            yield f"{link_id}: enableWhen answer {code} is not an option of {target_id}"


def describe_condition(condition: dict[str, Any]) -> str:
    """An enableWhen condition as a person reads it: ``I.D.diagnosis = I.D``."""
    answer_key = next(k for k in condition if k.startswith("answer"))
    answer = condition[answer_key]
    if answer_key == "answerCoding":
        answer = answer["code"]
    elif isinstance(answer, bool):
        answer = str(answer).lower()
    return f"{condition['question']} {condition['operator']} {answer}"


def check_questionnaire(
    questionnaire: dict[str, Any], value_sets: Mapping[str, dict[str, Any]] | None = None
) -> None:
    problems = questionnaire_problems(questionnaire, value_sets)
    if problems:
        raise QuestionnaireError(str(questionnaire.get("id", "Questionnaire")), problems)
