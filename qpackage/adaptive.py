"""Adaptive forms (DTR adaptive, SDC ``$next-question``), driven by the same
three-valued engine that scores.

For each static form ``{id}`` there is an adaptive form ``{id}-adaptive``:
a Questionnaire with the ``questionnaireAdaptive`` extension (its value the
service's base, where ``$next-question`` is) and no items, SDC ``entryMode``
``prior-edit``, the static form's ``cqf-library`` and ``launchContext``, and
an ``effectivePeriod`` where the service knows one (the version's release
time; its end once a newer version is in effect). Its draft
response carries a contained Questionnaire, ``derivedFrom`` the static
form, holding the questions asked so far; the response answers them.

What is asked next: the questions the engine reports missing for the
answers given — enabled, unanswered, and deciding a section that is still
unknown. Their answers can change the outcome or add a section the
determination cites; nothing else is asked. A diagnosis outside the policy
disables the questions that only apply to the policy's indication (they are
never asked); a denial goes on collecting every unknown section, so the
prescriber can fix everything at once. When nothing is missing, the response
is ``completed``.

The contained Questionnaire keeps the static form's linkIds, groups, codes
and answer lists (``answerValueSet``), and an ``enableWhen`` only where every
question it reads is asked too (the server decides what appears; a client
can still hide what a changed answer no longer enables), with the same
extensions and ``effectivePeriod`` as the adaptive form; it is
``derivedFrom`` the static form and the adaptive one, so the completed
response is a response to the static form as well, and ``$evaluate`` scores
it through ``derivedFrom``. The draft holds only what is already answered:
the client's first ``$next-question`` brings the first questions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import date
from typing import Any

from cql_like.definitions import (
    SDC_ENABLE_WHEN_EXPRESSION,
    enabling_expression,
    expression_answers,
)
from cql_like.engine import CompiledRequest
from qpackage.catalog import Catalog, checked_package
from scoring.carry import carry_over
from scoring.fill import earlier_answers, nest
from scoring.outcome import InvalidInput, Issue
from scoring.response import ADAPTIVE_SUFFIX, check_answers

SDC_ADAPTIVE = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-questionnaireAdaptive"
)
DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
DTR_Q_ADAPT_SEARCH = f"{DTR}/dtr-questionnaire-adapt-search"
DTR_Q_ADAPT = f"{DTR}/dtr-questionnaire-adapt"
DTR_QR_ADAPT = f"{DTR}/dtr-questionnaireresponse-adapt"
DERIVATION = "http://hl7.org/fhir/StructureDefinition/questionnaire-derivationType"
SDC_ENTRY_MODE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-entryMode"
# SDC entryMode "prior-edit": questions appear once the earlier ones are
# answered, and the earlier answers stay open to view and change — what this
# server does (each step re-decides from every answer sent, and drops those a
# changed answer no longer enables); not "sequential" (no going back) nor
# "random" (every question shown at once, as the static form does)
ENTRY_MODE = {"url": SDC_ENTRY_MODE, "valueCode": "prior-edit"}
SUFFIX = ADAPTIVE_SUFFIX
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
EXPRESSION = SDC_ENABLE_WHEN_EXPRESSION
CONTAINED_ID = "adaptive"


def _canonical(resource: Mapping[str, Any]) -> str:
    return f"{resource['url']}|{resource['version']}"


def adaptive_url(static_url: str) -> str:
    return static_url + SUFFIX


def static_url(url: str) -> str | None:
    """The static form's url of an adaptive form's url (None if it is not one)."""
    return url[: -len(SUFFIX)] if url.endswith(SUFFIX) else None


def _prepopulation(static: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The static form's prepopulation extensions (its launch contexts and
    CQL Library): they hold for the questions the adaptive form asks, which
    keep their initialExpression."""
    return [
        copy.deepcopy(e)
        for e in static.get("extension", [])
        if e["url"].endswith(("launchContext", "cqf-library"))
    ]


def _extensions(static: Mapping[str, Any], base: str) -> list[dict[str, Any]]:
    return [{"url": SDC_ADAPTIVE, "valueUrl": base}, dict(ENTRY_MODE), *_prepopulation(static)]


def adaptive_questionnaire(
    package: CompiledRequest, base: str, period: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The adaptive form of a static one, as ``$questionnaire-package`` returns
    it; ``period`` its version's ``effectivePeriod`` (Catalog.effective_period)."""
    static = package.questionnaire
    return {
        "resourceType": "Questionnaire",
        "id": static["id"] + SUFFIX,
        "meta": {"profile": [DTR_Q_ADAPT_SEARCH]},
        "extension": _extensions(static, base),
        "url": adaptive_url(static["url"]),
        "version": static["version"],
        "name": static["name"] + "Adaptive",
        "title": f"{static['title']} (adaptive)",
        "derivedFrom": [_canonical(static)],
        "status": static["status"],
        "subjectType": ["Patient"],
        **({"date": static["date"]} if "date" in static else {}),
        "publisher": static["publisher"],
        "description": (
            "Asks, one step at a time, only what can still change the determination: "
            + static["description"]
        ),
        **({"effectivePeriod": dict(period)} if period else {}),
    }


def _expression_reads(item: Mapping[str, Any]) -> set[str] | None:
    """The linkIds an item's enableWhenExpression reads (through its
    ``variable`` extensions); None when it has none."""
    if enabling_expression(dict(item)) is None:
        return None
    return set(expression_answers(dict(item)).values())


def _asked_items(items: list[dict[str, Any]], asked: set[str]) -> list[dict[str, Any]]:
    """The static items that were asked, in the static order and nesting
    (their groups with them)."""
    out = []
    for item in items:
        children = _asked_items(item.get("item", []), asked)
        if item["linkId"] not in asked and not children:
            continue
        # an enableWhen stays where every question it reads is asked too: a
        # client then hides what an answer changed here no longer enables,
        # as the server would on the next step; one reading a question not
        # asked would hide the item for good
        conditions = item.get("enableWhen", [])
        keeps = bool(conditions) and all(c["question"] in asked for c in conditions)
        dropped = ("item",) if keeps else ("enableWhen", "enableBehavior", "item")
        kept = {key: value for key, value in item.items() if key not in dropped}
        # an enableWhenExpression likewise, read through its variables
        reads = _expression_reads(item)
        if reads is not None and not reads <= asked:
            extensions = [
                e for e in item.get("extension", []) if e["url"] not in (VARIABLE, EXPRESSION)
            ]
            kept.pop("extension", None)
            if extensions:
                kept["extension"] = extensions
        if item["type"] == "group":
            if not children:
                continue
            kept["item"] = children
        out.append(copy.deepcopy(kept))
    return out


def contained_questionnaire(
    package: CompiledRequest,
    asked: set[str],
    base: str,
    period: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    static = package.questionnaire
    return {
        "resourceType": "Questionnaire",
        "id": CONTAINED_ID,
        "meta": {"profile": [DTR_Q_ADAPT]},
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">The questions asked so far.</div>',
        },
        "extension": _extensions(static, base),
        "url": adaptive_url(static["url"]),
        "version": static["version"],
        "title": static["title"],
        # the static form whose items it asks, and the adaptive form it is
        "derivedFrom": [_canonical(static), f"{adaptive_url(static['url'])}|{static['version']}"],
        "status": static["status"],
        "subjectType": ["Patient"],
        **({"effectivePeriod": dict(period)} if period else {}),
        # none asked yet (a draft): no item element, as FHIR has no empty arrays
        **({"item": items} if (items := _asked_items(static["item"], asked)) else {}),
    }


def _questions_of(items: list[dict[str, Any]]) -> set[str]:
    found = set()
    for item in items:
        if item.get("type") not in ("group", "display"):
            found.add(item["linkId"])
        found |= _questions_of(item.get("item", []))
    return found


def step(
    package: CompiledRequest,
    response: dict[str, Any],
    asked: set[str],
    as_of: date,
    base: str,
    period: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The response with the next questions added to its contained
    Questionnaire, answers to items now disabled dropped, and ``status``
    completed when nothing more is needed."""
    checked = check_answers(package, response, prune_disabled=True)
    evaluation = package.evaluate(response, checked.by_link, as_of, checked.enabled)
    kept = {
        link: answers
        for link, answers in earlier_answers(response, keep_extensions=True).items()
        if link not in checked.pruned
    }
    missing = set(evaluation.missing_questions)
    asked = (asked | missing | set(kept)) & set(package.items)
    result = {
        key: value
        for key, value in response.items()
        if key not in ("contained", "item", "questionnaire", "status")
    }
    result["meta"] = {"profile": [DTR_QR_ADAPT]}
    result["contained"] = [contained_questionnaire(package, asked, base, period)]
    result["questionnaire"] = f"#{CONTAINED_ID}"
    result["status"] = "in-progress" if missing else "completed"
    items = nest(package.questionnaire["item"], kept)
    if items:
        result["item"] = items
    ordered: dict[str, Any] = {
        k: result.pop(k) for k in ("resourceType", "id", "meta") if k in result
    }
    return {**ordered, **result}


def start(
    package: CompiledRequest,
    draft: dict[str, Any],
    as_of: date,
    base: str,
    period: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The adaptive draft: the static draft (its links to coverage and order,
    its prefilled answers) with a contained Questionnaire holding only what
    is already answered. The client's first ``$next-question`` brings the
    first questions: a draft that held them unanswered would come back from
    it with nothing new, and a client looping on new questions stops there."""
    result = step(package, dict(draft), set(), as_of, base, period)
    if result["status"] != "completed":
        # the prefilled answers the step kept (one to a question the others
        # disable is dropped)
        held = set(earlier_answers(result)) & set(package.items)
        result["contained"] = [contained_questionnaire(package, held, base, period)]
    return result


def next_question(catalog: Catalog, body: dict[str, Any], as_of: date, base: str) -> dict[str, Any]:
    """SDC ``$next-question``: the body is the adaptive QuestionnaireResponse,
    or Parameters with it as ``questionnaire-response``. Anything that is not
    a valid response to one of our adaptive forms is a 400."""
    response = _response_of(body)
    try:
        if not (
            isinstance(response.get("questionnaire"), str)
            and response["questionnaire"].startswith("#")
        ):
            raise InvalidInput(
                [
                    Issue(
                        "invalid",
                        "an adaptive response names its contained Questionnaire (questionnaire:"
                        " '#id'); a response to a static form needs no next question",
                        "QuestionnaireResponse.questionnaire",
                    )
                ]
            )
        package = checked_package(catalog, response)
        contained = next(
            c for c in response.get("contained", []) if c.get("id") == response["questionnaire"][1:]
        )
        asked = _questions_of(contained.get("item", []))
        current = catalog.in_effect(package)
        if current is not package:
            # begun on an earlier version: go on under the version in effect,
            # with the answers that carry over (what is new or changed is asked)
            check_answers(package, response, prune_disabled=True)
            moved = carry_over(package, current, response)
            package, response = current, moved.response
            asked &= set(moved.carried)
        return step(package, response, asked, as_of, base, catalog.effective_period(package))
    except InvalidInput as exc:
        raise InvalidInput(exc.issues, 400) from None


def _response_of(body: dict[str, Any]) -> dict[str, Any]:
    if body.get("resourceType") == "QuestionnaireResponse":
        return body
    if body.get("resourceType") == "Parameters":
        entries = body.get("parameter")
        parts = [
            p
            for p in (entries if isinstance(entries, list) else [])
            if isinstance(p, dict) and p.get("name") == "questionnaire-response"
        ]
        if len(parts) == 1 and isinstance(parts[0].get("resource"), dict):
            resource: dict[str, Any] = parts[0]["resource"]
            return resource
        raise InvalidInput(
            [
                Issue(
                    "required",
                    "$next-question takes Parameters with one 'questionnaire-response' resource",
                    "Parameters.parameter",
                )
            ],
            400,
        )
    raise InvalidInput(
        [
            Issue(
                "invalid",
                "$next-question takes a QuestionnaireResponse (or Parameters carrying one),"
                f" not {body.get('resourceType')!r}",
                "resourceType",
            )
        ],
        400,
    )
