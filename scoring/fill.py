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

from cql_like.engine import CompiledRequest
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
    response["item"] = _items(questionnaire["item"], by_link)
    return response


def _items(items: list[dict[str, Any]], answers: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        link_id = item["linkId"]
        if item["type"] == "group":
            children = _items(item.get("item", []), answers)
            if children:
                out.append({"linkId": link_id, "text": item.get("text", ""), "item": children})
        elif link_id in answers and answers[link_id] is not None:
            given = answers[link_id]
            values = given if isinstance(given, list) else [given]  # a multi-select
            out.append(
                {
                    "linkId": link_id,
                    "text": item.get("text", ""),
                    "answer": [_value(item, value) for value in values],
                }
            )
    return out


def _value(item: dict[str, Any], value: Any) -> dict[str, Any]:
    key = VALUE_KEY[item["type"]]
    if item["type"] == "choice":
        code = str(value)
        for option in item.get("answerOption", []):
            if option["valueCoding"]["code"] == code:
                return {key: dict(option["valueCoding"])}
        raise KeyError(f"{code} is not an option of {item['linkId']}")
    if isinstance(value, date):
        value = value.isoformat()
    return {key: value}
