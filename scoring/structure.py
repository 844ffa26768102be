"""The structure check of a submitted QuestionnaireResponse: a walk over the
JSON, element by element, against the R4B element table
(``scoring/r4b_structure.json``, derived from the ``fhir.resources`` models
by ``scoring/structure_table.py``).

Building the ``fhir.resources`` model of every response cost most of the
scorer's time (about 80% at 1,000 items), and the model coerces what FHIR
JSON does not allow (``"valueBoolean": 0``, ``"valueInteger": "5"``). This
walk takes each element's exact JSON type: an element its datatype does not
have, a list where one value belongs or one value where a list belongs, a
primitive not in its FHIR format (id, code, uri, canonical, url, oid, uuid,
date, dateTime, instant, time, decimal, integer and its ranges,
base64Binary, booleans only ``true``/``false``), a required element missing,
two types of one choice (``value[x]``), an extension without its url or
with both a value and nested extensions, or with neither. Each problem is
an ``Issue`` naming its path. Contained resources (an adaptive form's
Questionnaire) are each checked by their own ``fhir.resources`` model, as
before: the table covers what a response itself holds.

``tests/scoring/test_structure_diff.py`` checks, on the case tables, the
worked examples and fuzzed responses, that this walk accepts nothing the
``fhir.resources`` model refuses. The walk is iterative; depth is bounded
by the shape check that runs before it (``MAX_DEPTH``).
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from scoring.outcome import Issue
from scoring.structure_table import ROOT_TYPE, TABLE_PATH

MAX_ISSUES = 20

# type → {element: (type, list, required, choice group)}
Elements = dict[str, tuple[str, bool, bool, str | None]]


class _Type:
    """One row of the table, ready for the walk."""

    __slots__ = ("choices", "elements", "name", "required")

    def __init__(self, name: str, row: Mapping[str, Any]) -> None:
        self.name = name
        self.elements: Elements = {
            key: (kind, bool(is_list), bool(required), group)
            for key, (kind, is_list, required, group) in row["elements"].items()
        }
        self.required = tuple(key for key, spec in self.elements.items() if spec[2])
        self.choices = tuple(
            (group, tuple(entry["of"]), bool(entry["required"]))
            for group, entry in row["choices"].items()
        )


def _load() -> dict[str, _Type]:
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return {name: _Type(name, row) for name, row in table.items()}


TYPES = _load()

# --- primitives: FHIR's formats (https://hl7.org/fhir/R4B/datatypes.html) ---------

_STRING = re.compile(r"[ \r\n\t\S]")  # some character FHIR's string allows
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_URI = re.compile(r"\S+")
_OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
# url: an absolute http(s)/ftp URL with a host name, or a path relative to
# the server (``Binary/123``)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_URL = re.compile(
    rf"(https?|ftp)://({_LABEL}\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:(?P<port>[0-9]{{1,5}}))?"
    r"([/?#]([A-Za-z0-9\-._~:/?#@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)?"
    r"|[A-Za-z0-9\-.]+(/[A-Za-z0-9\-._~:@!$&'()*+,;=]+)*"
)
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"-(0[1-9]|1[0-2])"
_DAY = r"-(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|[+\-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_DATE = re.compile(rf"{_YEAR}({_MONTH}({_DAY})?)?")
_DATE_TIME = re.compile(rf"{_YEAR}({_MONTH}({_DAY}(T{_TIME}{_ZONE})?)?)?")
_INSTANT = re.compile(rf"{_YEAR}{_MONTH}{_DAY}T{_TIME}{_ZONE}")
_TIME_OF_DAY = re.compile(_TIME)
_RANGES = {
    "integer": (-(2**31), 2**31 - 1),
    "unsignedInt": (0, 2**31 - 1),
    "positiveInt": (1, 2**31 - 1),
    "integer64": (-(2**63), 2**63 - 1),
}


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a JSON string, not {_shown(value)}"
    return None if _STRING.search(value) else "must hold some text"


def _pattern(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a JSON string ({what}), not {_shown(value)}"
        return None if pattern.fullmatch(value) else f"{_shown(value)} is not {what}"

    return check


def _url(value: Any) -> str | None:
    problem = _pattern(_URL, "a url")(value)
    if problem is None:
        port = _URL.fullmatch(value)["port"]  # type: ignore[index]
        if port is not None and int(port) > 65535:
            return f"{_shown(value)} is not a url"
    return problem


def _calendar(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    """A date, dateTime or instant: FHIR's format, and a day of the calendar."""
    form = _pattern(pattern, what)

    def check(value: Any) -> str | None:
        problem = form(value)
        if problem is None and len(value) >= 10:
            try:
                date.fromisoformat(value[:10])
            except ValueError:
                return f"{_shown(value)} is not a day of the calendar"
        return problem

    return check


def _integer(kind: str) -> Callable[[Any], str | None]:
    low, high = _RANGES[kind]

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a JSON integer, not {_shown(value)}"
        if low <= value <= high:
            return None
        return f"{value} is outside the range of a FHIR {kind} ({low} to {high})"

    return check


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {_shown(value)}"


def _decimal(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a JSON number (decimal), not {_shown(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None if _DECIMAL.fullmatch(str(value)) else f"{value} is not a decimal"


def _base64(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be base64 text, not {_shown(value)}"
    if value.startswith("data:"):
        return (
            "is a data URL that is not base64 (data:<type>;base64,<payload>):"
            " send the file's bytes as base64"
        )
    packed = "".join(value.split())  # FHIR's base64Binary allows whitespace
    try:
        if not packed or not packed.isascii():
            raise ValueError
        binascii.a2b_base64(packed, strict_mode=True)
    except (binascii.Error, ValueError):
        return "is not base64 (RFC 4648)"
    return None


PRIMITIVES: dict[str, Callable[[Any], str | None]] = {
    "boolean": _boolean,
    "integer": _integer("integer"),
    "unsignedInt": _integer("unsignedInt"),
    "positiveInt": _integer("positiveInt"),
    "integer64": _integer("integer64"),
    "decimal": _decimal,
    "string": _text,
    "markdown": _text,
    "xhtml": _text,
    "code": _pattern(_CODE, "a code"),
    "id": _pattern(_ID, "an id (letters, digits, '-' and '.', at most 64)"),
    "uri": _pattern(_URI, "a uri"),
    "canonical": _pattern(_URI, "a canonical"),
    "url": _url,
    "oid": _pattern(_OID, "an oid (urn:oid:…)"),
    "uuid": _pattern(_UUID, "a uuid (urn:uuid:…, version 4)"),
    "base64Binary": _base64,
    "date": _calendar(_DATE, "a date (YYYY, YYYY-MM or YYYY-MM-DD)"),
    "dateTime": _calendar(_DATE_TIME, "a dateTime (a date, or a date and time with a zone)"),
    "instant": _calendar(_INSTANT, "an instant (a date and time with a zone)"),
    "time": _pattern(_TIME_OF_DAY, "a time (hh:mm:ss)"),
}
PRIMITIVE_EXTENSION = "_"  # the type of ``_status``: id and extensions


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:30]}…"


# --- the walk ------------------------------------------------------------------------

# (value, type name, parent node, key): the parent chain spells the path
_Node = tuple[Any, str, Any, Any]


def _step(key: Any) -> str:
    """``.item[2]`` for the key ``("item", 2)``; ``.status`` for ``"status"``."""
    if isinstance(key, tuple):
        return f".{key[0]}[{key[1]}]"
    return f".{key}"


def _path(node: _Node | None, key: Any = None) -> str:
    parts: list[str] = [] if key is None else [_step(key)]
    while node is not None and node[2] is not None:
        parts.append(_step(node[3]))
        node = node[2]
    return ROOT_TYPE + "".join(reversed(parts))


def _item_of(node: _Node | None) -> str:
    """``item LINKID: `` for the innermost item on the node's path."""
    while node is not None:
        value = node[0]
        if node[1] == "QuestionnaireResponseItem" and isinstance(value, dict):
            link = value.get("linkId")
            if isinstance(link, str):
                return f"item {link}: "
        node = node[2]
    return ""


def structure_problems(resource: Mapping[str, Any]) -> list[Issue]:
    """What is wrong with the structure of ``resource`` as an R4B
    QuestionnaireResponse (its ``resourceType`` already checked); empty when
    nothing is. At most ``MAX_ISSUES``."""
    issues: list[Issue] = []

    def problem(node: _Node, key: Any, text: str) -> None:
        where = _path(node, key)
        issues.append(Issue("structure", f"{_item_of(node)}{where}: {text}", where))

    stack: list[_Node] = [(resource, ROOT_TYPE, None, None)]
    contained: list[Any] = []
    while stack and len(issues) < MAX_ISSUES:
        node = stack.pop()
        value, kind = node[0], node[1]
        if not isinstance(value, dict):
            parent = node[2]
            where = _path(parent, node[3])
            issues.append(
                Issue("structure", f"{_item_of(parent)}{where}: must be a JSON object", where)
            )
            continue
        if kind == PRIMITIVE_EXTENSION:
            _primitive_extension(node, stack, problem)
            continue
        spec = TYPES[kind]
        elements = spec.elements
        for key, inner in value.items():
            element = elements.get(key)
            if element is None:
                if not (key == "resourceType" and node[2] is None):
                    problem(node, key, f"{kind} has no element {key!r}")
                continue
            of, is_list, _required, _group = element
            values: list[Any]
            if is_list:
                if not isinstance(inner, list):
                    problem(node, key, "must be a JSON list")
                    continue
                values = inner
            else:
                if isinstance(inner, list):
                    problem(node, key, "takes one value, not a list")
                    continue
                values = [inner]
            check = PRIMITIVES.get(of)
            if check is not None:
                for number, one in enumerate(values):
                    wrong = check(one)
                    if wrong:
                        problem(node, (key, number) if is_list else key, wrong)
            elif of == "Resource":
                contained.extend(values)
            elif of == PRIMITIVE_EXTENSION and is_list:
                for number, one in enumerate(values):
                    if one is not None:
                        stack.append((one, of, node, (key, number)))
            else:
                for number, one in enumerate(values):
                    stack.append((one, of, node, (key, number) if is_list else key))
        for key in spec.required:
            given = value.get(key)
            if given is None or given == []:
                extension = value.get(f"_{key}")
                if not (isinstance(extension, dict) and extension.get("extension")):
                    problem(node, key, f"{kind}.{key} is required")
        for group, names, required in spec.choices:
            present = [name for name in names if name in value]
            if len(present) > 1:
                problem(node, f"{group}[x]", f"one {group}[x] only, got {', '.join(present)}")
            elif required and not present:
                problem(node, f"{group}[x]", f"{kind}.{group}[x] is required")
        if kind == "Extension":
            has_value = any(name in value for name in spec.choices[0][1])
            if has_value == bool(value.get("extension")):
                problem(
                    node,
                    None,
                    "an extension has either a value[x] or nested extensions"
                    + (", not both" if has_value else ""),
                )
    if contained and not issues:
        issues += _contained_problems(contained)
    return issues[:MAX_ISSUES]


def _primitive_extension(
    node: _Node, stack: list[_Node], problem: Callable[[_Node, Any, str], None]
) -> None:
    """``_status``: a primitive's id and extensions, at least one given."""
    value = node[0]
    for key, inner in value.items():
        if key == "id":
            wrong = _text(inner)
            if wrong:
                problem(node, key, wrong)
        elif key == "extension":
            if not isinstance(inner, list):
                problem(node, key, "must be a JSON list")
                continue
            stack.extend((one, "Extension", node, (key, n)) for n, one in enumerate(inner))
        else:
            problem(node, key, f"a primitive's extension has no element {key!r}")
    if "id" not in value and "extension" not in value:
        problem(node, None, "a primitive's extension needs an id or extensions")


def _contained_problems(contained: list[Any]) -> list[Issue]:
    """Contained resources, each by its own ``fhir.resources`` model (imported
    only when a response contains one)."""
    from fhir.resources.R4B.questionnaireresponse import (
        QuestionnaireResponse,
    )
    from pydantic import ValidationError

    try:
        QuestionnaireResponse.model_validate(
            {"resourceType": ROOT_TYPE, "status": "completed", "contained": contained}
        )
    except RecursionError:
        return [Issue("structure", "the resource nests too deeply", ROOT_TYPE)]
    except ValidationError as exc:
        issues = []
        for error in exc.errors()[:MAX_ISSUES]:
            where = ROOT_TYPE + "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
            )
            issues.append(Issue("structure", f"{where}: {error['msg']}", where))
        return issues
    except (AttributeError, TypeError, ValueError, UnicodeError) as exc:
        return [
            Issue(
                "structure",
                f"a contained resource is not valid R4 ({type(exc).__name__}: {exc})",
                f"{ROOT_TYPE}.contained",
            )
        ]
    return []
