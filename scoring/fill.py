"""Filling a Questionnaire in Python: answers by question name → a QuestionnaireResponse.

What a provider does in a renderer, done from data: used by the clinical case
tables, the benchmark, the CLI's examples and the browser tests (which check
that LHC-Forms' export scores the same). Items are emitted in the
Questionnaire's order and nesting; groups appear only when something inside
them is answered. It does not check enableWhen, so a test can also build a
response that answers a disabled item.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from cql_like.engine import CompiledRequest, ItemSpec
from scoring.response import VALUE_KEY


def fill(
    package: CompiledRequest,
    answers: Mapping[str, Any],
    *,
    subject: str | None = "Patient/example",
    status: str = "completed",
    response_id: str | None = None,
) -> dict[str, Any]:
    """``answers`` maps question names (or linkIds) to plain values: booleans,
    numbers, dates, option codes for choice questions."""
    by_link: dict[str, Any] = {}
    for key, value in answers.items():
        link_id = package.link_of.get(key, key)
        if link_id not in package.items:
            raise KeyError(
                f"{key} is neither a question name nor a linkId of {package.questionnaire['id']}"
            )
        by_link[link_id] = value
    questionnaire = package.questionnaire
    response: dict[str, Any] = {"resourceType": "QuestionnaireResponse"}
    if response_id:
        response["id"] = response_id
    response["questionnaire"] = f"{questionnaire['url']}|{questionnaire['version']}"
    response["status"] = status
    if subject:
        response["subject"] = {"reference": subject}
    answer_dicts = {
        link_id: [
            _value(package.items[link_id], value, package.codings)
            # a multi-select takes a list
            for value in (given if isinstance(given, list) else [given])
        ]
        for link_id, given in by_link.items()
        if given is not None
    }
    response["item"] = nest(questionnaire["item"], answer_dicts)
    return response


def nest(
    items: list[dict[str, Any]], answers: Mapping[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Answers (answer dicts) by linkId placed in the Questionnaire's order and
    nesting; a group appears only when something inside it is answered."""
    out = []
    for item in items:
        link_id = item["linkId"]
        if item["type"] == "group":
            children = nest(item.get("item", []), answers)
            if children:
                out.append({"linkId": link_id, "text": item.get("text", ""), "item": children})
        elif answers.get(link_id):
            out.append(
                {"linkId": link_id, "text": item.get("text", ""), "answer": answers[link_id]}
            )
    return out


def _value(
    item: ItemSpec, value: Any, codings: Mapping[str, list[dict[str, str]]]
) -> dict[str, Any]:
    key = VALUE_KEY[item.type]
    if item.type == "choice":
        code = str(value)
        for coding in codings.get(item.link_id, []):
            if coding["code"] == code:
                return {key: dict(coding)}
        raise KeyError(f"{code} is not an option of {item.link_id}")
    if isinstance(value, date):
        value = value.isoformat()
    return {key: value}


def earlier_answers(
    response: Mapping[str, Any], *, keep_extensions: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The answers of a response by linkId: values only (the value keys of
    our item types, without the origin a draft adds again), or with their
    extensions (an adaptive response keeps what the client said of them)."""
    found: dict[str, list[dict[str, Any]]] = {}
    value_keys = set(VALUE_KEY.values())

    def walk(items: Any) -> None:
        for item in items if isinstance(items, list) else []:
            answers = [
                {
                    k: v
                    for k, v in answer.items()
                    if k in value_keys or (keep_extensions and k == "extension")
                }
                for answer in item.get("answer", [])
                if isinstance(answer, dict)
            ]
            answers = [a for a in answers if a]
            if answers:
                found[item["linkId"]] = answers
            walk(item.get("item"))

    walk(response.get("item"))
    return found
