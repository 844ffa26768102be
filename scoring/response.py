"""Input checks on a submitted QuestionnaireResponse, before any scoring.

The response is parsed as JSON, checked as an R4 QuestionnaireResponse
element by element (``scoring/structure.py``), matched to the Questionnaire it names, then walked item by
item against that Questionnaire: unknown linkIds, items out of place, answers
of the wrong type or outside the answer options or bounds, several answers to
a single-answer item, and answers to items that are not enabled are each an
issue naming the item. What passes is indexed once, by linkId, for the
engine. Nothing from the response is ever evaluated as an expression.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cql_like.definitions import enabling_expression
from cql_like.engine import CompiledRequest
from questionnaires.checks import describe_condition
from scoring.outcome import InvalidInput, Issue
from scoring.structure import MAX_DEPTH, structure_problems

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
    pruned: list[str] = field(default_factory=list)  # answers dropped as disabled


def parse_json(body: bytes | str) -> dict[str, Any]:
    """JSON text → a resource dict; malformed JSON is an issue with its position."""
    try:
        # strict: json.loads would let bytes of a lone surrogate through
        data = json.loads(body.decode("utf-8") if isinstance(body, bytes) else body)
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
    except RecursionError:
        raise InvalidInput([Issue("invalid", "the JSON is nested too deeply")], 400) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidInput([Issue("invalid", f"the JSON cannot be read: {exc}")], 400) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            [Issue("invalid", "the body must be a JSON object (a FHIR resource)")], 400
        )
    return data


def check_structure(resource: Mapping[str, Any]) -> None:
    """The resource is an R4 QuestionnaireResponse (structure only)."""
    if not isinstance(resource, Mapping):
        raise InvalidInput([Issue("invalid", "expected a QuestionnaireResponse (a JSON object)")])
    kind = resource.get("resourceType")
    if kind != "QuestionnaireResponse":
        raise InvalidInput(
            [Issue("invalid", f"expected a QuestionnaireResponse, got resourceType {kind!r}")]
        )
    problems = structure_problems(resource)
    if problems:
        raise InvalidInput(problems)
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


# An adaptive form's url: its static form's, with this suffix.
ADAPTIVE_SUFFIX = "-adaptive"


def questionnaire_of(resource: Mapping[str, Any]) -> object:
    """The canonical of the Questionnaire a response answers: its
    ``questionnaire``, or — for an adaptive form, whose ``questionnaire`` is
    ``#id`` of a contained Questionnaire — what that Questionnaire is
    ``derivedFrom`` (the static form whose items it asks)."""
    reference = resource.get("questionnaire")
    if not (isinstance(reference, str) and reference.startswith("#")):
        return reference
    where = "QuestionnaireResponse.questionnaire"
    given = resource.get("contained")
    contained = [
        c
        for c in (given if isinstance(given, list) else [])
        if isinstance(c, dict)
        and c.get("resourceType") == "Questionnaire"
        and c.get("id") == reference[1:]
    ]
    if len(contained) != 1:
        raise InvalidInput(
            [Issue("not-found", f"no contained Questionnaire {reference} in the response", where)]
        )
    given_from = contained[0].get("derivedFrom")
    derived = given_from if isinstance(given_from, list) else []
    # the static form whose items it asks, and (DTR asks for it too) the
    # adaptive form's own canonical, which names no items
    static = [
        d for d in derived if isinstance(d, str) and not d.split("|")[0].endswith(ADAPTIVE_SUFFIX)
    ]
    if len(static) != 1 or len(derived) > 2:
        raise InvalidInput(
            [
                Issue(
                    "required",
                    f"the contained Questionnaire {reference} must name the form it is derived"
                    " from (derivedFrom: the static form's url|version, and the adaptive"
                    " form's)",
                    "QuestionnaireResponse.contained.derivedFrom",
                )
            ]
        )
    return static[0]


# A client may contain a few resources of its own (an author, a
# Questionnaire of an adaptive form); never thousands.
MAX_CONTAINED = 10


def size_bound(package: CompiledRequest) -> tuple[int, int]:
    """The most items and answers a response to ``package``'s form can hold:
    every linkId at most once, one answer each (a multi-select at most one
    per option)."""
    questions = [spec for spec in package.items.values() if spec.type != "group"]
    return len(package.items), sum(len(s.options) if s.repeats else 1 for s in questions)


def check_size(
    package: CompiledRequest | None,
    resource: Mapping[str, Any],
    bound: tuple[int, int] | None = None,
) -> None:
    """Refuse, before any per-item work, a response larger than its
    Questionnaire can be answered with (``size_bound``; contained
    Questionnaires no larger than the form), or, when it names no form this
    service knows, larger than ``bound`` (the largest form's). Counting stops
    at the first node over the bound, so a response of any size costs at
    most that many steps here (the body's byte limit bounds the JSON parse
    before it)."""
    if package is not None:
        most_items, most_answers = size_bound(package)
        form = f"its Questionnaire {package.questionnaire['url']}"
    else:
        assert bound is not None
        most_items, most_answers = bound
        form = "any Questionnaire of this service"

    def refuse(what: str, path: str) -> None:
        raise InvalidInput(
            [
                Issue(
                    "too-long",
                    f"the response has more {what} than {form} can be answered with"
                    f" ({most_items} items, {most_answers} answers): it is refused"
                    " unread",
                    path,
                )
            ]
        )

    def count(top: Any, path: str) -> None:
        items = answers = 0
        pending = [top]
        while pending:
            nodes = pending.pop()
            if not isinstance(nodes, list):
                continue
            items += len(nodes)
            if items > most_items:
                refuse("items", path)
            for node in nodes:
                if not isinstance(node, dict):
                    continue
                pending.append(node.get("item"))
                given = node.get("answer")
                if isinstance(given, list):
                    answers += len(given)
                    if answers > most_answers:
                        refuse("answers", path)
                    pending.extend(a.get("item") for a in given if isinstance(a, dict))

    count(resource.get("item"), "QuestionnaireResponse.item")
    contained = resource.get("contained")
    if isinstance(contained, list):
        if len(contained) > MAX_CONTAINED:
            raise InvalidInput(
                [
                    Issue(
                        "too-long",
                        f"the response contains {len(contained)} resources; at most"
                        f" {MAX_CONTAINED} are taken",
                        "QuestionnaireResponse.contained",
                    )
                ]
            )
        for number, inner in enumerate(contained):
            if isinstance(inner, dict):
                count(inner.get("item"), f"QuestionnaireResponse.contained[{number}].item")


def check_answers(
    package: CompiledRequest, resource: Mapping[str, Any], *, prune_disabled: bool = False
) -> Answers:
    """Walk the response against its Questionnaire; index the answers by linkId.

    An answer to an item its enableWhen disables is refused — unless
    ``prune_disabled``: an adaptive form's contained Questionnaire has no
    enableWhen, so the server drops such answers itself (a changed earlier
    answer can disable what was asked after it); the answers kept are
    returned, and what was dropped is in ``Answers.pruned``."""
    issues: list[Issue] = []
    answers: dict[str, list[Any]] = {}
    _walk(package, resource.get("item", []), None, "QuestionnaireResponse", answers, issues)
    if issues:
        raise InvalidInput(issues)
    variables = package.answer_variables(answers)
    enabled = package.enablement(resource, variables)
    pruned: list[str] = []
    while prune_disabled:
        dropped = [link for link, values in answers.items() if values and not enabled.get(link)]
        if not dropped:
            break
        for link_id in dropped:
            answers[link_id] = []
        pruned += dropped
        # what a dropped answer enabled may be disabled in turn
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
    return Answers(answers, enabled, pruned)


def _disabled_by(package: CompiledRequest, link_id: str, enabled: dict[str, bool]) -> str:
    """The enableWhen that disables an item: its own, or its nearest disabled group's."""
    spec = package.items[link_id]
    while spec.parent is not None and not enabled.get(spec.parent, True):
        spec = package.items[spec.parent]
    item = package.questionnaire_items[spec.link_id]
    joiner = " or " if item.get("enableBehavior") == "any" else " and "
    conditions = joiner.join(describe_condition(c) for c in item.get("enableWhen", []))
    written = enabling_expression(item)
    if written is not None:
        conditions = f"enableWhenExpression {written}"
    return f"{spec.link_id}: {conditions}" if spec.link_id != link_id else conditions


def _walk(
    package: CompiledRequest,
    items: list[dict[str, Any]],
    parent: str | None,
    path: str,
    answers: dict[str, list[Any]],
    issues: list[Issue],
) -> None:
    if not isinstance(items, list):
        issues.append(Issue("structure", "item must be a list of items", path))
        return
    for position, item in enumerate(items):
        here = f"{path}.item[{position}]"
        if not isinstance(item, dict):
            issues.append(Issue("structure", "each item must be a JSON object", here))
            continue
        link_id = str(item.get("linkId"))
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
        if not isinstance(values, list):
            issues.append(Issue("structure", f"the answers to {link_id} must be a list", here))
            continue
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
        if spec.signature_required and answers[link_id] and not _signed(item, here, issues):
            # an attestation the form asks to be signed, answered but not
            # signed, is not yet attested: unanswered, so the request pends
            answers[link_id] = []


SIGNATURE = "http://hl7.org/fhir/StructureDefinition/questionnaireresponse-signature"
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _signed(item: Mapping[str, Any], here: str, issues: list[Issue]) -> bool:
    """Whether a response item carries a signature (``type``, ``when``,
    ``who``, as FHIR's Signature requires them); a malformed one is an input
    error naming the item. The signature's bytes, if any, are kept, not
    verified: what the payer enforces is that the prescriber signed."""
    extensions = item.get("extension", [])
    found = [
        e for e in (extensions if isinstance(extensions, list) else [])
        if isinstance(e, dict) and e.get("url") == SIGNATURE
    ]  # fmt: skip
    if not found:
        return False
    for extension in found:
        value = extension.get("valueSignature")
        types = value.get("type") if isinstance(value, dict) else None
        ok = (
            isinstance(value, dict)
            and isinstance(types, list)
            and bool(types)
            and all(isinstance(t, dict) and isinstance(t.get("code"), str) for t in types)
            and isinstance(value.get("when"), str)
            and bool(_INSTANT.fullmatch(value["when"]))
            and isinstance(value.get("who"), dict)
            and bool(value["who"])
        )
        if not ok:
            issues.append(
                Issue(
                    "value",
                    f"item {item.get('linkId')}: the signature must carry its type (codings),"
                    " when (an instant) and who signed",
                    f"{here}.extension",
                )
            )
            return False
    return True


# FHIR's date: a year, a year and month, or a full date (a year of four digits).
_DATE = re.compile(r"^([0-9]{4})(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$")
# The dates this service takes: a birth date, a start of therapy, a test date.
EARLIEST_YEAR, LATEST_YEAR = 1850, 2199
INTEGER_RANGE = (-(2**31), 2**31 - 1)  # FHIR integer
MAX_DECIMAL = 10**15  # no dose, count or lab value comes near it
# Reports are often PDFs of a few MB; a body carrying one is allowed to be
# that much larger than others (the service's limits).
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024


def _json_type_problem(item_type: str, value: Any) -> str | None:
    """What is wrong with an answer value's JSON type (the FHIR models coerce
    ``0`` or ``"true"`` into a boolean; we take exactly the JSON type)."""
    if item_type == "boolean":
        return None if isinstance(value, bool) else f"must be true or false, not {value!r}"
    if item_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a JSON integer, not {value!r}"
        low, high = INTEGER_RANGE
        return None if low <= value <= high else "is outside the range of a FHIR integer"
    if item_type == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a JSON number, not {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        return None if abs(value) <= MAX_DECIMAL else "is too large for an answer"
    if item_type == "date":
        return _date_problem(value)
    if item_type in ("string", "text"):
        return None if isinstance(value, str) else f"must be a JSON string, not {value!r}"
    if item_type == "choice":
        if not isinstance(value, dict):
            return "must be a Coding (a JSON object)"
        if not all(isinstance(value.get(k), str) for k in ("system", "code")):
            return "must carry a system and a code, both strings"
        return None
    if item_type == "attachment":
        return None if isinstance(value, dict) else "must be an Attachment (a JSON object)"
    return None


def _date_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a date string (YYYY-MM-DD), not {value!r}"
    match = _DATE.match(value)
    if not match:
        return f"{value!r} is not a date (YYYY-MM-DD, or YYYY-MM or YYYY)"
    year = int(match.group(1))
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        return f"{value!r} is outside the dates this service takes ({EARLIEST_YEAR}-{LATEST_YEAR})"
    if match.group(4):
        try:
            date.fromisoformat(value)
        except ValueError:
            return f"{value!r} is not a day of the calendar"
    return None


# RFC 2397's base64 form, as some DTR clients (CSIRO Smart Forms) put a file
# in Attachment.data: data:<type>[;param=value]*;base64,<payload>
DATA_URL = re.compile(
    r"data:(?P<type>[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+)?"
    r"(?:;[A-Za-z0-9!#$&^_.+-]+=[^;,]*)*;base64,(?P<payload>.*)",
    re.DOTALL,
)


def unpack_data_urls(resource: Any) -> tuple[Any, list[str]]:
    """The response with each attachment whose ``data`` is a base64 data URL
    (``data:application/pdf;base64,JVBER…``, as CSIRO Smart Forms sends it)
    rewritten as FHIR has it: the payload in ``data``, the media type in
    ``contentType`` (unless one is given); with a note of each one so
    normalised, for the determination to say. A data URL whose media type is
    not the ``contentType`` given is refused (422, naming the item): which
    of the two is the document's type cannot be told. What is not such a
    data URL is left for the checks to judge (its base64, size and type are
    checked as any attachment's). The caller's resource is not changed: what
    is rewritten is new, down from the top, and the rest is shared (the
    resource itself when nothing is a data URL). Nothing deeper than ``MAX_DEPTH`` items is looked at: the
    structure check refuses such a response, and the walk stays bounded
    whatever is sent."""
    notes: list[str] = []
    issues: list[Issue] = []
    unpacked = _unpacked(resource, 0, notes, issues)
    if issues:
        raise InvalidInput(issues)
    return unpacked, notes


def _unpacked(resource: Any, depth: int, notes: list[str], issues: list[Issue]) -> Any:
    if not isinstance(resource, Mapping) or depth > MAX_DEPTH:
        return resource
    items = resource.get("item")
    if not isinstance(items, list):
        return resource
    unpacked = [_unpacked_item(item, depth + 1, notes, issues) for item in items]
    if all(new is old for new, old in zip(unpacked, items, strict=True)):
        return resource
    return {**resource, "item": unpacked}


def _unpacked_item(item: Any, depth: int, notes: list[str], issues: list[Issue]) -> Any:
    if not isinstance(item, Mapping):
        return item
    inner = _unpacked(item, depth, notes, issues)
    answers = item.get("answer")
    if not isinstance(answers, list):
        return inner
    link = item.get("linkId")
    unpacked = [_unpacked_answer(a, link, depth + 1, notes, issues) for a in answers]
    if inner is item and all(new is old for new, old in zip(unpacked, answers, strict=True)):
        return item
    return {**inner, "answer": unpacked}


def _unpacked_answer(
    answer: Any, link: object, depth: int, notes: list[str], issues: list[Issue]
) -> Any:
    if not isinstance(answer, Mapping):
        return answer
    out = _unpacked(answer, depth, notes, issues)  # an answer's nested items
    value = answer.get("valueAttachment")
    data = value.get("data") if isinstance(value, Mapping) else None
    match = DATA_URL.fullmatch(data) if isinstance(data, str) else None
    if not (isinstance(value, Mapping) and match):
        return out
    kind = match["type"].lower() if match["type"] else None
    given = value.get("contentType")
    if kind and isinstance(given, str) and given.lower() != kind:
        issues.append(
            Issue(
                "value",
                f"item {link}: the attachment's data is a data URL of {kind}, but its"
                f" contentType says {given}: send one type",
                "QuestionnaireResponse.item.answer.valueAttachment",
            )
        )
        return out
    attachment = {**value, "data": match["payload"]}
    if kind and given is None:
        attachment["contentType"] = kind
    out = {**out, "valueAttachment": attachment}
    notes.append(
        f"The attachment of item {link} came as a data URL"
        f" (data:{kind or ''};base64,…): its prefix was removed and the document kept as sent"
    )
    return out


def _attachment_problem(value: dict[str, Any]) -> str | None:
    data, url = value.get("data"), value.get("url")
    if data is None and url is None:
        return "the attachment carries neither data nor a url: nothing is attached"
    if url is not None and not isinstance(url, str):
        return "the attachment's url must be a string"
    if data is not None:
        if not isinstance(data, str):
            return "the attachment's data must be base64 text"
        if data.startswith("data:"):
            return (
                "the attachment's data is a data URL that is not base64"
                " (data:<type>;base64,<payload>): send the file's bytes as base64"
            )
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return "the attachment's data is not valid base64"
        if len(decoded) > MAX_ATTACHMENT_BYTES:
            return (
                f"the attachment is {len(decoded) / 1024 / 1024:.1f} MB; the limit is"
                f" {MAX_ATTACHMENT_BYTES // 1024 // 1024} MB"
            )
    content_type = value.get("contentType")
    if content_type is not None and not isinstance(content_type, str):
        return "the attachment's contentType must be a string"
    return None


# An ICD-10-CM code as CMS gives its format: 3 to 7 characters, the first a
# letter, the second a digit, the rest letters or digits, a dot after the
# third when there are more (claims often leave the dot out). Letters in
# either case, as EHRs send them. Only the format: whether the code exists
# in this year's code set is the reviewer's to see.
ICD_10_CM = re.compile(r"[A-Za-z][0-9][A-Za-z0-9](\.?[A-Za-z0-9]{1,4})?")


def _answer_value(spec: Any, answer: Any, here: str, issues: list[Issue]) -> Any:
    link_id = spec.link_id
    expected = VALUE_KEY.get(spec.type, f"an answer to a {spec.type} item")
    if not isinstance(answer, dict):
        issues.append(Issue("structure", f"each answer to {link_id} must be a JSON object", here))
        return None
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
    wrong = _json_type_problem(spec.type, value)
    if wrong:
        issues.append(Issue("value", f"item {link_id}: {expected} {wrong}", here))
        return None
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
    if spec.format == "icd-10-cm" and not ICD_10_CM.fullmatch(value):
        issues.append(
            Issue(
                "value",
                f"item {link_id}: {value!r} is not an ICD-10-CM code (a letter, a digit, a letter"
                " or digit, then up to four letters or digits after an optional dot: C56.9,"
                " C569, S72.001A)",
                here,
            )
        )
        return None
    if spec.type == "attachment":
        problem = _attachment_problem(value)
        if problem:
            issues.append(Issue("value", f"item {link_id}: {problem}", here))
            return None
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
