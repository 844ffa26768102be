"""Carrying a response's answers over to a later version of its Questionnaire.

A new request is decided under the version of the policy in effect when it
is received, whichever released version the client's form was. The answers
of the version the response names move to the version in effect by linkId,
and only where the question is the same question: the same item type,
single or multiple answers, answer options (system and code) and bounds. An
answer to an item that changed, or that the later version no longer has, is
not carried, and neither is one to an item the later version's enableWhen
disables for these answers; whatever the later version asks that was not
carried is unanswered, so the request pends naming the current form's
questions. Nothing is guessed: an answer is never translated to another
question.

One function, :func:`carry_over`, so that every path that meets an older
version (``$evaluate``, ``$next-question``, the portal, ``dtr score``, and
reports that re-score stored requests under a new version) moves answers the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cql_like.engine import CompiledRequest, ItemSpec
from scoring.fill import earlier_answers, nest
from scoring.response import check_answers


@dataclass(frozen=True)
class CarriedOver:
    """A response moved to a later version of its Questionnaire."""

    response: dict[str, Any]  # the response to the later version
    answered: str  # the url|version the response named
    carried: list[str]  # linkIds whose answers moved
    not_carried: list[str]  # linkIds answered but left behind: changed, gone or now disabled


def same_question(before: ItemSpec, after: ItemSpec) -> bool:
    """Whether an answer to ``before`` is, unchanged, an answer to ``after``."""
    return (
        before.type == after.type
        and before.repeats == after.repeats
        and before.options == after.options
        and before.min_value == after.min_value
        and before.max_value == after.max_value
    )


def canonical_of(package: CompiledRequest) -> str:
    questionnaire = package.questionnaire
    return f"{questionnaire['url']}|{questionnaire['version']}"


def carry_over(
    source: CompiledRequest, target: CompiledRequest, response: Mapping[str, Any]
) -> CarriedOver:
    """``response`` (a response to ``source``'s Questionnaire, already checked
    against it) as a response to ``target``'s. Everything else the response
    says (subject, extensions, author, dates, status) stays as it was; an
    adaptive response's contained Questionnaire is dropped, since the result
    answers the static form of the later version."""
    given = earlier_answers(response, keep_extensions=True)
    moved: dict[str, list[dict[str, Any]]] = {}
    left: list[str] = []
    for link_id, answers in given.items():
        before, after = source.items.get(link_id), target.items.get(link_id)
        if before is not None and after is not None and same_question(before, after):
            moved[link_id] = answers
        else:
            left.append(link_id)
    result = {
        key: value
        for key, value in response.items()
        if key not in ("item", "questionnaire", "contained")
    }
    result["questionnaire"] = canonical_of(target)
    result["item"] = nest(target.questionnaire["item"], moved)
    # an answer the later version's enableWhen disables for these answers is
    # not part of the request under it (dropping one may disable others)
    pruned = check_answers(target, result, prune_disabled=True).pruned
    if pruned:
        for link_id in pruned:
            moved.pop(link_id, None)
        left += pruned
        result["item"] = nest(target.questionnaire["item"], moved)
    if not result["item"]:
        del result["item"]
    ordered: dict[str, Any] = {
        k: result.pop(k) for k in ("resourceType", "id", "meta") if k in result
    }
    return CarriedOver(
        response={**ordered, **result},
        answered=canonical_of(source),
        carried=[link for link in given if link in moved],
        # in the order the response's own form asks them
        not_carried=[link for link in given if link in set(left)],
    )
