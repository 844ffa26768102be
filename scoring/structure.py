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
to ``MAX_DEPTH``, checked as it goes, as are nulls and text that is not
Unicode.
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

    __slots__ = ("choices", "elements", "name", "required", "walked")

    def __init__(self, name: str, row: Mapping[str, Any]) -> None:
        self.name = name
        self.elements: Elements = {
            key: (kind, bool(is_list), bool(required), group)
            for key, (kind, is_list, required, group) in row["elements"].items()
        }
        self.required = tuple(key for key, spec in self.elements.items() if spec[2])
        # what the walk reads per element: type, list, the primitive's check, choice group
        self.walked: dict[str, tuple[str, bool, Callable[[Any], str | None] | None, str | None]]
        self.walked = {
            key: (kind, is_list, PRIMITIVES.get(kind), group)
            for key, (kind, is_list, _required, group) in self.elements.items()
        }
        self.choices = tuple(
            (group, tuple(entry["of"]), bool(entry["required"]))
            for group, entry in row["choices"].items()
        )


def _load() -> dict[str, _Type]:
    table = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return {name: _Type(name, row) for name, row in table.items()}


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


def _unicode(text: str) -> bool:
    """Encodable as UTF-8 (a JSON escape can make a lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


NOT_UNICODE = "is not valid Unicode text"


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a JSON string, not {_shown(value)}"
    if not _unicode(value):
        return NOT_UNICODE
    if value and (not value.isspace() or _STRING.search(value)):
        return None  # some character that is not white space, or FHIR's own
    return "must hold some text"


def _pattern(pattern: re.Pattern[str], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a JSON string ({what}), not {_shown(value)}"
        if not _unicode(value):
            return NOT_UNICODE
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
    if not _unicode(value):
        return NOT_UNICODE
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

TYPES = _load()


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:30]}…"


# --- the walk ------------------------------------------------------------------------

# No Questionnaire of ours nests deeper than a few groups; far deeper JSON is
# refused before anything that recurses (the contained resources' models,
# the answers' walk) sees it.
MAX_DEPTH = 64

# (value, type name, parent node, key, depth): the parent chain spells the
# path; a key is an element name, or (name, position) in a list
_Node = tuple[Any, str, Any, Any, int]


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


class _Walk:
    """One walk's issues, spelled only when there is one."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def problem(self, node: _Node, key: Any, text: str) -> None:
        where = _path(node, key)
        self.issues.append(Issue("structure", f"{_item_of(node)}{where}: {text}", where))

    def shape(self, node: _Node | None, key: Any, text: str) -> None:
        """JSON FHIR forbids whatever the element (a null, a string that is
        not Unicode, an object or list where the other belongs)."""
        where = _path(node, key)
        self.issues.append(Issue("structure", f"{_item_of(node)}{where} {text}", where))


NULL = "is null: FHIR JSON leaves an empty element out"


def _too_deep(value: dict[str, Any], depth: int) -> bool:
    """Whether a member of an object at ``depth`` lies deeper than
    ``MAX_DEPTH`` (only asked near the bound)."""
    return any(
        depth + (2 if isinstance(inner, list) and inner else 1) > MAX_DEPTH
        for inner in value.values()
    )


def structure_problems(resource: Mapping[str, Any]) -> list[Issue]:
    """What is wrong with the structure of ``resource`` as an R4B
    QuestionnaireResponse (its ``resourceType`` already checked); empty when
    nothing is. At most ``MAX_ISSUES``; nesting deeper than ``MAX_DEPTH`` is
    the one issue."""
    walk = _Walk()
    issues = walk.issues
    stack: list[_Node] = [(resource, ROOT_TYPE, None, None, 0)]
    contained: list[Any] = []
    while stack and len(issues) < MAX_ISSUES:
        node = stack.pop()
        value, kind, parent, _key, depth = node
        if type(value) is not dict:
            walk.shape(parent, node[3], "must be a JSON object")
            continue
        if depth >= MAX_DEPTH - 1 and _too_deep(value, depth):
            where = _path(node)
            return [
                Issue("structure", f"the resource nests more than {MAX_DEPTH} levels deep", where)
            ]
        if kind == PRIMITIVE_EXTENSION:
            _primitive_extension(node, stack, walk)
            continue
        spec = TYPES[kind]
        elements = spec.walked
        chosen: list[str] = []
        for key, inner in value.items():
            element = elements.get(key)
            if element is None:
                if not (key == "resourceType" and parent is None):
                    if _unicode(key):
                        walk.problem(node, key, f"{kind} has no element {key!r}")
                    else:
                        walk.shape(node, None, "has a key that is not Unicode")
                continue
            of, is_list, check, group = element
            if inner is None:
                walk.shape(node, key, NULL)
                continue
            if group is not None:
                chosen.append(key)
            if is_list:
                if type(inner) is not list:
                    walk.shape(node, key, "must be a JSON list")
                    continue
                if check is not None:
                    for number, one in enumerate(inner):
                        wrong = NULL if one is None else check(one)
                        if wrong:
                            walk.problem(node, (key, number), wrong)
                elif of == "Resource":
                    contained.extend(inner)
                else:
                    for number, one in enumerate(inner):
                        if one is None:
                            walk.shape(node, (key, number), NULL)
                        else:
                            stack.append((one, of, node, (key, number), depth + 2))
            elif type(inner) is list:
                walk.problem(node, key, "takes one value, not a list")
            elif check is not None:
                wrong = check(inner)
                if wrong:
                    walk.problem(node, key, wrong)
            else:
                stack.append((inner, of, node, key, depth + 1))
        for key in spec.required:
            given = value.get(key)
            if given is None or given == []:
                extension = value.get(f"_{key}")
                if not (isinstance(extension, dict) and extension.get("extension")):
                    walk.problem(node, key, f"{kind}.{key} is required")
        if chosen and len(chosen) > 1:
            for group, names, _required in spec.choices:
                present = [name for name in chosen if name in names]
                if len(present) > 1:
                    walk.problem(
                        node, f"{group}[x]", f"one {group}[x] only, got {', '.join(present)}"
                    )
        for group, names, required in spec.choices:
            if required and not any(name in value for name in names):
                walk.problem(node, f"{group}[x]", f"{kind}.{group}[x] is required")
        if kind == "Extension":
            has_value = bool(chosen)
            if has_value == bool(value.get("extension")):
                walk.problem(
                    node,
                    None,
                    "an extension has either a value[x] or nested extensions"
                    + (", not both" if has_value else ""),
                )
    if contained and not issues:
        issues += _contained_problems(contained)
    return issues[:MAX_ISSUES]


def _primitive_extension(node: _Node, stack: list[_Node], walk: _Walk) -> None:
    """``_status``: a primitive's id and extensions, at least one given."""
    value, depth = node[0], node[4]
    for key, inner in value.items():
        if inner is None:
            walk.shape(node, key, NULL)
        elif key == "id":
            wrong = _text(inner)
            if wrong:
                walk.problem(node, key, wrong)
        elif key == "extension":
            if type(inner) is not list:
                walk.shape(node, key, "must be a JSON list")
                continue
            for number, one in enumerate(inner):
                if one is None:
                    walk.shape(node, (key, number), NULL)
                else:
                    stack.append((one, "Extension", node, (key, number), depth + 2))
        else:
            walk.problem(node, key, f"a primitive's extension has no element {key!r}")
    if "id" not in value and "extension" not in value:
        walk.problem(node, None, "a primitive's extension needs an id or extensions")


# Elements of a QuestionnaireResponse that are objects, and lists anywhere:
# the FHIR models would parse a JSON string given for them as JSON.
OBJECT_ELEMENTS = frozenset(
    {"subject", "author", "source", "encounter", "identifier", "meta", "text"}
)
LIST_ELEMENTS = frozenset(
    {"item", "answer", "extension", "modifierExtension", "basedOn", "partOf", "contained"}
)


def shape_problems(resource: Mapping[str, Any]) -> list[Issue]:
    """JSON that FHIR forbids, found before the FHIR models (which recurse and
    coerce) see it: nesting deeper than ``MAX_DEPTH``, nulls (FHIR JSON leaves
    an element out rather than writing null), text that is not Unicode, and
    other JSON types where objects and lists belong. What ran before the
    model when the model checked every response; now before a contained
    resource's model (the walk above checks the same of the rest). Walked
    without recursion; a node's path is spelled out only for a problem."""
    issues: list[Issue] = []
    # (value, depth, parent node, key): the parent chain spells the path
    stack: list[tuple[Any, int, Any, Any]] = [(resource, 0, None, None)]
    while stack and len(issues) < 20:
        node = stack.pop()
        value, depth = node[0], node[1]
        if depth > MAX_DEPTH:
            return [
                Issue(
                    "structure",
                    f"the resource nests more than {MAX_DEPTH} levels deep",
                    _spelled(node),
                )
            ]
        if value is None:
            path = _spelled(node)
            issues.append(
                Issue("structure", f"{path} is null: FHIR JSON leaves an empty element out", path)
            )
        elif isinstance(value, str):
            if not _unicode(value):
                path = _spelled(node)
                issues.append(Issue("structure", f"{path} is not valid Unicode text", path))
        elif isinstance(value, dict):
            for key, inner in value.items():
                problem = None
                if not _unicode(key):
                    problem = "has a key that is not Unicode"
                elif key[:1] == "_" and not isinstance(inner, dict | list):
                    problem = "must be a JSON object"  # a primitive's extensions (`_status`)
                elif depth == 0 and key in OBJECT_ELEMENTS and not isinstance(inner, dict):
                    problem = "must be a JSON object"
                elif key in LIST_ELEMENTS and not isinstance(inner, list):
                    problem = "must be a JSON list"
                if problem:
                    where = _spelled((inner, depth + 1, node, key))
                    issues.append(Issue("structure", f"{where} {problem}", where))
                stack.append((inner, depth + 1, node, key))
        elif isinstance(value, list):
            stack.extend((v, depth + 1, node, i) for i, v in enumerate(value))
    return sorted(issues, key=lambda issue: issue.diagnostics)


def _spelled(node: tuple[Any, int, Any, Any]) -> str:
    """``QuestionnaireResponse.item[1].answer[0]`` for a node of the walk."""
    parts: list[str] = []
    while node[2] is not None:
        key = node[3]
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        node = node[2]
    return "QuestionnaireResponse" + "".join(reversed(parts))


def _contained_problems(contained: list[Any]) -> list[Issue]:
    """Contained resources, each by its own ``fhir.resources`` model (imported
    only when a response contains one)."""
    from fhir.resources.R4B.questionnaireresponse import (
        QuestionnaireResponse,
    )
    from pydantic import ValidationError

    wrapper = {"resourceType": ROOT_TYPE, "status": "completed", "contained": contained}
    shape = shape_problems(wrapper)
    if shape:
        return shape
    try:
        QuestionnaireResponse.model_validate(wrapper)
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
