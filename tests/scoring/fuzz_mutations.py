"""Mutations of valid QuestionnaireResponses, shared by the property-based fuzz
test (``tests/scoring/test_fuzz.py``, Hypothesis strategies) and the long campaign
(``bench/fuzz_campaign.py``, a plain ``random.Random``).

A fuzz input is a valid response of the clinical case tables (a :class:`Base`),
one or more :class:`Mutation` s applied to it as JSON, then an
:class:`Encoding`: the body as a dict (in process), JSON text or bytes, the
bytes possibly broken (truncated, not UTF-8, replaced by deep nesting). Both
generators produce the same :class:`Mutation` and :class:`Encoding` values and
go through the same :func:`apply` and :func:`encode`, so a failure either finds
is reproduced by printing them.

This module holds no test: pytest collects only ``test_*.py``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hypothesis import strategies as st

from qpackage.catalog import Catalog, score_json
from scoring import Determination, InvalidInput
from scoring.fill import fill
from tests.support.cases import AS_OF, load_scoring_cases, package_for

Path = tuple[str | int, ...]


# --- the valid responses mutated ------------------------------------------------


@dataclass(frozen=True, repr=False)
class Base:
    """One valid response of a case table, with what its mutations may draw on."""

    name: str
    doc: dict[str, Any]
    as_of: date
    link_ids: tuple[str, ...]  # every linkId of its Questionnaire
    date_links: frozenset[str]  # the linkIds of its date questions

    def __repr__(self) -> str:
        return f"Base({self.name!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis' reports
        printer.text(repr(self))


def load_bases(catalog: Catalog) -> list[Base]:
    """Every case of the case tables filled into a response (cases of a fixture
    policy folder left out; a case the current policies cannot fill — a table
    out of step with a policy being edited — skipped)."""
    bases = []
    for param in load_scoring_cases():
        case = param.values[0]
        if case.get("folder"):
            continue
        package = package_for(catalog, case["policy"], case["request"], case.get("drug"))
        try:
            doc = fill(package, case["answers"])
        except KeyError:
            continue
        bases.append(
            Base(
                name=f"{case['policy']}: {case['name']}",
                doc=doc,
                as_of=case.get("as_of", AS_OF),
                link_ids=tuple(package.items),
                date_links=frozenset(k for k, s in package.items.items() if s.type == "date"),
            )
        )
    return bases


# --- values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON literal written verbatim into the body text (what a dict cannot
    hold or ``json.dumps`` will not write: 5000-digit integers, NaN, 1e400,
    arrays nested 1000 deep). A body holding one is always sent as text."""

    text: str

    def __repr__(self) -> str:
        shown = self.text if len(self.text) <= 40 else f"{self.text[:20]}…{self.text[-10:]}"
        return f"Raw({shown!r}, {len(self.text)} chars)"


class Big(str):
    """A large string, shown short in reports."""

    def __repr__(self) -> str:
        return f"Big({self[:12]!r}… {len(self)} chars)"


RAW_VALUES: tuple[Raw, ...] = (
    Raw("1" + "0" * 5000),  # 10**5000: past Python's int-string limit (4300 digits)
    Raw("-" + "9" * 4301),
    Raw("1" + "0" * 4299),  # 4300 digits: the largest int Python reads
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),  # read as inf
    Raw("-1e400"),
    Raw("1e-400"),  # read as 0.0
    Raw("12345678901234567890.5"),
    Raw("[" * 1000 + "]" * 1000),
    Raw('{"a":' * 1000 + "1" + "}" * 1000),
    Raw("[" * 100 + "]" * 100),
)

DATE_VALUES: tuple[str, ...] = (
    "2008",
    "2008-11",
    "0999-01-01",
    "0001-01-01",
    "9999-12-31",
    "2008-02-30",
    "2007-02-29",
    "2000-02-29",
    "1849-12-31",
    "1850-01-01",
    "2199-12-31",
    "2200-01-01",
    "2008-13-01",
    "2008-00-10",
    "2008-11-00",
    "2008-1-1",
    "20081124",
    "2008-11-24T10:00:00Z",
    "2008-11-24T25:00:00",
    " 2008-11-24",
    "2008-11-24\n",
    "2008\n",
    "2008-11\n",
    "+2008-11-24",
    "-2008",
    "\uff12\uff10\uff10\uff18-11-24",  # fullwidth digits
    "2026-11-24",
    "2026-11-25",
    "2026-11",
    "2026",
    "2027",
    "1926",
    "",
)

UNKNOWN_LINK_IDS: tuple[str, ...] = (
    "",
    "nope",
    "I.Z",
    " I",
    "I ",
    "i",
    "QL.requested_quantity.x",
    "' or true or '",
    "I')",
    "\ud800",
    "\u0000",
    "é",
    "x" * 300,
)

VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    1,
    -1,
    0.0,
    -0.0,
    0.5,
    1.0,
    66.0,
    1e308,
    -1e308,
    5e-324,
    2**31,
    -(2**31) - 1,
    2**63,
    10**100,
    10**309,  # past a float
    -(10**309),
    10**4000,
    "",
    "true",
    "false",
    "no",
    "yes",
    "0",
    "1",
    "66",
    "null",
    "[]",
    "{}",
    '{"extension": []}',
    '"x"',
    "completed",
    Big("x" * 100_000),
    "\ud800",
    "\udfff\ud800",
    "\u0000",
    "é ü 中文 🙂",
    "I.D",
    "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial|1.0.0-r1",
    "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial",
    "Patient/example",
    *DATE_VALUES[:6],
    [],
    [None],
    [1, "a"],
    [{}],
    [[[]]],
    [True, False],
    {},
    {"a": 1},
    {"valueBoolean": True},
    {"valueInteger": 1},
    {"valueDate": "2008"},
    {"system": "x", "code": "y"},
    {"linkId": "I"},
    {"linkId": "I", "item": []},
    {"reference": "Patient/example"},
    {"resourceType": "QuestionnaireResponse"},
    *RAW_VALUES,
)

# the keys an insertion into an answer adds: its value[x] and their primitive
# extensions (``_valueBoolean``: FHIR JSON's sibling of a primitive value)
ANSWER_KEYS: tuple[str, ...] = (
    "valueBoolean",
    "valueInteger",
    "valueDecimal",
    "valueDate",
    "valueDateTime",
    "valueString",
    "valueCoding",
    "valueQuantity",
    "valueAttachment",
    "valueReference",
    "valueUri",
    "value",
    "item",
    "_valueBoolean",
    "_valueDate",
    "_valueInteger",
    "_valueString",
)

# the keys an insertion into any object adds (FHIR's, and look-alikes)
KEYS: tuple[str, ...] = (
    *ANSWER_KEYS,
    "answer",
    "linkId",
    "text",
    "id",
    "extension",
    "modifierExtension",
    "authored",
    "author",
    "subject",
    "questionnaire",
    "status",
    "resourceType",
    "meta",
    "contained",
    "basedOn",
    "url",
    "data",
    "contentType",
    "reference",
    "system",
    "code",
    "_linkId",
    "_status",
    "_text",
    "_authored",
    "_questionnaire",
    "",
    "x" * 100,
)

# --- paths into a JSON document ---------------------------------------------------


def walk(doc: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every node of ``doc`` with its path, parents first (without recursion)."""
    stack: list[tuple[Path, Any]] = [(path, doc)]
    while stack:
        here, node = stack.pop()
        yield here, node
        if isinstance(node, dict):
            stack.extend(((*here, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*here, i), v) for i, v in reversed(list(enumerate(node))))


def get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


@dataclass(frozen=True)
class Paths:
    """The places of one document a mutation can act on."""

    nodes: tuple[Path, ...]  # every node (the root included)
    members: tuple[Path, ...]  # every dict member and list element (deletable)
    elements: tuple[Path, ...]  # every list element (duplicable)
    items: tuple[Path, ...]  # every dict in an ``item`` list
    answers: tuple[Path, ...]  # every dict in an ``answer`` list
    objects: tuple[Path, ...]  # every dict (can take a key, or an item)
    dates: tuple[Path, ...]  # every string that is (or is meant as) a date
    answered: tuple[Path, ...] = field(default=())  # items that carry answers


_DATEISH = re.compile(r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$")
_DATE_KEYS = {"valueDate", "valueDateTime", "authored"}


def paths(doc: Any) -> Paths:
    nodes, members, elements, items, answers, objects, dates, answered = ([] for _ in range(8))
    for path, node in walk(doc):
        nodes.append(path)
        if path:
            members.append(path)
        if path and isinstance(path[-1], int):
            elements.append(path)
        if isinstance(node, dict):
            objects.append(path)
            if len(path) >= 2 and path[-2] == "item":
                items.append(path)
                if isinstance(node.get("answer"), list) and node["answer"]:
                    answered.append(path)
            if len(path) >= 2 and path[-2] == "answer":
                answers.append(path)
        if isinstance(node, str) and path and (path[-1] in _DATE_KEYS or _DATEISH.match(node)):
            dates.append(path)
    return Paths(*map(tuple, (nodes, members, elements, items, answers, objects, dates, answered)))


# --- mutations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """One change to a response as JSON.

    kinds: ``replace`` (the node at ``path`` by ``value``), ``delete``,
    ``duplicate`` (a list element, inserted again after itself), ``relink``
    (an item's linkId to ``value``), ``move`` (an item into the ``item`` list
    of the object at ``target``), ``date`` (a date string to ``value``),
    ``insert`` (``key``: ``value`` into the object at ``path``), ``nest`` (a
    chain of ``value`` nested items — ``key`` "item" or "answer" — appended to
    the object at ``path``, linkId ``target``), ``wrap`` (the whole response
    into a Parameters resource).
    """

    kind: str
    path: Path = ()
    value: Any = None
    key: str | None = None
    target: Any = None

    def __str__(self) -> str:
        parts = [self.kind, "/".join(map(str, self.path)) or "(root)"]
        if self.key is not None:
            parts.append(f"key={_short(self.key)}")
        if self.kind not in ("delete", "duplicate", "wrap", "move"):
            parts.append(f"value={_short(self.value)}")
        if self.target is not None:
            parts.append(f"target={_short(self.target)}")
        return " ".join(parts)


def _short(value: Any) -> str:
    """A value's repr, cut in the middle when long (a 4000-digit integer)."""
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{shown[:40]}…{shown[-12:]} ({len(shown)} chars)"


def wrap_parameters(resource: Any) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "response", "resource": resource}]}


def nested(depth: int, style: str, link_id: str) -> dict[str, Any]:
    """``depth`` items each inside the last (``style`` "item": item.item…;
    "answer": item.answer.item…), built without recursion."""
    inner: dict[str, Any] = {"linkId": link_id, "answer": [{"valueBoolean": True}]}
    for _ in range(depth - 1):
        if style == "answer":
            inner = {"linkId": link_id, "answer": [{"valueBoolean": True, "item": [inner]}]}
        else:
            inner = {"linkId": link_id, "item": [inner]}
    return inner


def apply(doc: Any, mutation: Mutation) -> Any:
    """``doc`` changed by ``mutation`` (in place where it can be; use the result).
    A mutation whose path no longer exists is a no-op."""
    m = mutation
    if m.kind == "wrap":
        return wrap_parameters(doc)
    try:
        node = get(doc, m.path)
    except (KeyError, IndexError, TypeError):
        return doc
    if m.kind in ("replace", "date"):
        if not m.path:
            return deep_copy(m.value)
        get(doc, m.path[:-1])[m.path[-1]] = deep_copy(m.value)
    elif m.kind == "delete" and m.path:
        parent = get(doc, m.path[:-1])
        del parent[m.path[-1]]
    elif m.kind == "duplicate" and m.path and isinstance(m.path[-1], int):
        get(doc, m.path[:-1]).insert(m.path[-1] + 1, deep_copy(node))
    elif m.kind == "relink" and isinstance(node, dict):
        node["linkId"] = m.value
    elif m.kind == "insert" and isinstance(node, dict) and m.key is not None:
        node[m.key] = deep_copy(m.value)
    elif m.kind == "nest" and isinstance(node, dict):
        chain = nested(int(m.value), m.key or "item", str(m.target))
        _item_list(node).append(chain)
    elif m.kind == "move" and m.path and isinstance(m.path[-1], int):
        target = m.target
        if target is None or tuple(target[: len(m.path)]) == m.path:
            return doc  # into itself: not a move
        try:
            destination = get(doc, target)
        except (KeyError, IndexError, TypeError):
            return doc
        if not isinstance(destination, dict):
            return doc
        moved = get(doc, m.path[:-1]).pop(m.path[-1])
        _item_list(destination).append(moved)
    return doc


def _item_list(node: dict[str, Any]) -> list[Any]:
    if not isinstance(node.get("item"), list):
        node["item"] = []
    items: list[Any] = node["item"]
    return items


# --- the body -------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """How the mutated document is sent: ``form`` "dict" (in process), "str"
    or "bytes"; then for bytes a ``damage``: "truncate" (cut at ``at``, a
    fraction of the length), "insert" (``data`` inserted at ``at``),
    "overwrite" (the bytes at ``at`` overwritten by ``data``), "body" (the
    whole body replaced by ``data``), "utf-16", "latin-1" (non-UTF-8
    encodings of the text, with a non-ASCII character added)."""

    form: str = "str"
    damage: str | None = None
    at: float = 0.0
    data: bytes = b""

    def __str__(self) -> str:
        out = self.form
        if self.damage:
            shown = self.data if len(self.data) <= 24 else self.data[:12] + b"..." + self.data[-6:]
            out += f" {self.damage}"
            if self.damage in ("truncate", "insert", "overwrite"):
                out += f" at={self.at:.3f}"
            if self.data:
                out += f" data={shown!r} ({len(self.data)} bytes)"
        return out


GARBAGE: tuple[bytes, ...] = (
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate
    b"\x00",
    b"\xef\xbb\xbf",  # a BOM
    b"}",
    b"]",
    b",",
    b'"',
    b"\\",
    b"\\u",
    b"{" * 50,
    b"[" * 1000,
    b"NaN",
    b"1e400",
)

BODIES: tuple[bytes, ...] = (
    b"",
    b" ",
    b"null",
    b"true",
    b"0",
    b"[]",
    b"{}",
    b'"QuestionnaireResponse"',
    b'{"resourceType": "QuestionnaireResponse"}',
    b'{"resourceType": "QuestionnaireResponse", "status": "completed"}',
    b'{"resourceType": "Parameters"}',
    b'{"resourceType": "Parameters", "parameter": {}}',
    b'{"resourceType": "Parameters", "parameter": [{"name": "response"}]}',
    b"[" * 1000 + b"]" * 1000,
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    b'{"resourceType": "QuestionnaireResponse", "item": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    b"[" * 100_000,
    b"1" + b"0" * 5000,
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}",
)


class _Text(str):
    """A piece of JSON text already written (in :func:`to_text`'s stack)."""


def to_text(doc: Any) -> str:
    """JSON text of ``doc``, each :class:`Raw` written verbatim (a lone
    surrogate written as its escape, as JSON allows). Written without
    recursion: documents here nest a thousand levels and more, past what
    ``json.dumps`` (and the recursion limit the scorer runs under) allows."""
    out: list[str] = []
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, _Text):
            out.append(node)
        elif isinstance(node, Raw):
            out.append(node.text)
        elif isinstance(node, dict):
            parts: list[Any] = [_Text("{")]
            for number, (key, value) in enumerate(node.items()):
                parts += [_Text((", " if number else "") + json.dumps(key) + ": "), value]
            parts.append(_Text("}"))
            stack.extend(reversed(parts))
        elif isinstance(node, list):
            parts = [_Text("[")]
            for number, value in enumerate(node):
                parts += [_Text(", ")] if number else []
                parts.append(value)
            parts.append(_Text("]"))
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(node))
    return "".join(out)


def deep_copy(doc: Any) -> Any:
    """``copy.deepcopy`` without recursion (see :func:`to_text`)."""
    if not isinstance(doc, dict | list):
        return doc
    root: Any = {} if isinstance(doc, dict) else []
    stack: list[tuple[Any, Any]] = [(doc, root)]
    while stack:
        source, target = stack.pop()
        entries = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in entries:
            if isinstance(value, dict | list):
                copied: Any = {} if isinstance(value, dict) else []
                stack.append((value, copied))
            else:
                copied = value
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def _has_raw(doc: Any) -> bool:
    return any(isinstance(node, Raw) for _path, node in walk(doc))


def settle(doc: Any, encoding: Encoding) -> Encoding:
    """The encoding ``doc`` is really sent in: JSON text rather than a dict
    when it is no object or holds a :class:`Raw` literal."""
    if encoding.form == "dict" and (not isinstance(doc, dict) or _has_raw(doc)):
        return Encoding("str")
    return encoding


def encode(doc: Any, encoding: Encoding) -> bytes | str | dict[str, Any]:
    """The body handed to ``score_json`` (see :func:`settle`)."""
    if settle(doc, encoding).form == "dict":
        return dict(doc)
    text = to_text(doc)
    if encoding.form != "bytes":
        return text
    data = text.encode("utf-8", "surrogatepass")
    at = int(len(data) * encoding.at)
    if encoding.damage == "truncate":
        return data[:at]
    if encoding.damage == "insert":
        return data[:at] + encoding.data + data[at:]
    if encoding.damage == "overwrite":
        return data[:at] + encoding.data + data[at + len(encoding.data) :]
    if encoding.damage == "body":
        return encoding.data
    if encoding.damage == "utf-16":
        return text.encode("utf-16-le", "surrogatepass")
    if encoding.damage == "latin-1":
        return text.replace('"status"', '"status\u00e9"', 1).encode("latin-1", "replace")
    return data


# --- the properties ----------------------------------------------------------------------


class Failure(AssertionError):
    """A property does not hold (the message says which, and why)."""


def score_checked(catalog: Catalog, body: Any, as_of: date) -> Determination | InvalidInput:
    """Property (a): ``score_json`` gives a Determination (which serializes) or
    raises :class:`InvalidInput` with a 4xx status and an OperationOutcome;
    never any other exception (those propagate, with their traceback)."""
    try:
        determination = score_json(catalog, body, as_of)
    except InvalidInput as refusal:
        if not 400 <= refusal.status < 500:
            raise Failure(f"InvalidInput with status {refusal.status}: {refusal}") from None
        outcome = refusal.outcome()
        if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
            raise Failure(
                f"InvalidInput.outcome() is not an OperationOutcome: {outcome!r}"
            ) from None
        if not outcome.get("issue"):
            raise Failure("InvalidInput.outcome() has no issue") from None
        return refusal
    if not isinstance(determination, Determination):
        raise Failure(f"score_json returned {type(determination).__name__}")
    json.dumps(determination.to_json(), allow_nan=False)
    return determination


def drop_item(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy of ``doc`` without the item at ``path``; a group left with no
    item is dropped too (as a renderer leaves out an empty group)."""
    doc = deep_copy(doc)
    parent_list = get(doc, path[:-1])
    del parent_list[path[-1]]
    path = path[:-2]  # the object holding that item list
    while path and not get(doc, path).get("item"):
        del get(doc, path[:-1])[path[-1]]
        path = path[:-2]
    return doc


def coarsen_date(doc: dict[str, Any], path: Path, keep: int) -> dict[str, Any]:
    """A copy of ``doc`` with the date at ``path`` cut to its first ``keep``
    characters (4: a year, 7: a year and month)."""
    doc = deep_copy(doc)
    parent = get(doc, path[:-1])
    parent[path[-1]] = parent[path[-1]][:keep]
    return doc


def check_less_information(
    full: Determination, reduced: Determination | InvalidInput, what: str
) -> None:
    """Property (b): less information never gains an approval, and never turns
    an approval into a denial (or investigational): it may only pend it."""
    if not isinstance(reduced, Determination):
        return
    if full.outcome != "approved" and reduced.outcome == "approved":
        raise Failure(f"{what} turned {full.outcome} into approved")
    if full.outcome == "approved" and reduced.outcome not in ("approved", "pended"):
        raise Failure(f"{what} turned approved into {reduced.outcome}")


def date_answers(doc: Any) -> tuple[Path, ...]:
    """Paths of full ``valueDate`` answers (YYYY-MM-DD) in ``doc``."""
    if not isinstance(doc, dict):
        return ()
    return tuple(
        p for p in paths(doc).dates if p[-1] == "valueDate" and len(str(get(doc, p))) == 10
    )


# --- plans: what to mutate, drawn before the document is known --------------------------
#
# Both generators draw a :class:`Plan` (a kind, picks, a value) from fixed
# tables; :func:`resolve` turns it into a :class:`Mutation` of the document at
# hand (a pick is taken modulo the places of that kind the document has). The
# Hypothesis strategies are therefore built once, and a pick shrinks to the
# first place.


@dataclass(frozen=True)
class Plan:
    kind: str
    pick: int = 0  # which place
    value: Any = None
    key: str = "item"
    other: int = 0  # a second pick: a move's destination, an existing linkId
    known: bool = False  # relink/nest: to an existing linkId (by ``other``), else ``value``


KINDS: tuple[str, ...] = (
    "replace",  # any node, by a value of any type
    "replace-item",  # an item or an answer, by a value of any type
    "delete",  # any member or element
    "delete-item",
    "duplicate",  # any list element
    "duplicate-item",  # an item or an answer
    "relink",
    "move",
    "date",
    "insert",  # a key into any object
    "insert-answer",  # a value[x] key into an answer
    "nest",
    "wrap",
)


def resolve(plan: Plan, base: Base, doc: Any) -> Mutation | None:
    """The mutation ``plan`` makes of ``doc``; None when it has no such place."""
    where = paths(doc)
    places = {
        "replace": where.nodes,
        "replace-item": where.items + where.answers,
        "delete": where.members,
        "delete-item": where.items,
        "duplicate": where.elements,
        "duplicate-item": where.items + where.answers,
        "relink": where.items,
        "move": where.items,
        "date": where.dates,
        "insert": where.objects,
        "insert-answer": where.answers,
        "nest": where.objects,
        "wrap": ((),),
    }[plan.kind]
    if not places:
        return None
    path = places[plan.pick % len(places)]
    kind = plan.kind.split("-")[0]
    link = base.link_ids[plan.other % len(base.link_ids)] if plan.known else plan.value
    if kind == "relink":
        return Mutation(kind, path, link)
    if kind == "move":
        return Mutation(kind, path, target=where.objects[plan.other % len(where.objects)])
    if kind == "nest":
        depth = plan.pick % 201 + 100 if plan.other % 3 else plan.pick % 40 + 2
        return Mutation(kind, path, depth, key=plan.key, target=link)
    if kind == "insert":
        return Mutation(kind, path, plan.value, key=plan.key)
    if kind in ("delete", "duplicate", "wrap"):
        return Mutation(kind, path)
    return Mutation(kind, path, plan.value)


def mutate(base: Base, plans: Sequence[Plan]) -> tuple[Any, list[Mutation]]:
    """``base``'s response changed by each plan in turn, and the mutations made."""
    doc: Any = deep_copy(base.doc)
    made = []
    for plan in plans:
        mutation = resolve(plan, base, doc)
        if mutation is not None:
            made.append(mutation)
            doc = apply(doc, mutation)
    return doc, made


# --- generating with Hypothesis -----------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
VALUE = st.one_of(
    st.sampled_from(VALUES),
    _scalars,
    st.sampled_from(DATE_VALUES),
    st.recursive(
        _scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
        ),
        max_leaves=6,
    ),
)
_pick = st.integers(0, 2**16)
_link = st.sampled_from(UNKNOWN_LINK_IDS)


def _plan(kind: str, **kw: st.SearchStrategy[Any]) -> st.SearchStrategy[Plan]:
    return st.builds(Plan, st.just(kind), _pick, **kw)


PLAN: st.SearchStrategy[Plan] = st.one_of(
    _plan("replace", value=VALUE),
    _plan("replace-item", value=VALUE),
    _plan("delete"),
    _plan("delete-item"),
    _plan("duplicate"),
    _plan("duplicate-item"),
    _plan("relink", value=_link, other=_pick, known=st.booleans()),
    _plan("move", other=_pick),
    _plan("date", value=st.sampled_from(DATE_VALUES)),
    _plan("insert", value=VALUE, key=st.sampled_from(KEYS)),
    _plan(
        "insert-answer",
        value=st.one_of(st.sampled_from(DATE_VALUES), VALUE),
        key=st.sampled_from(ANSWER_KEYS),
    ),
    _plan(
        "nest",
        value=_link,
        key=st.sampled_from(("item", "answer")),
        other=_pick,
        known=st.booleans(),
    ),
    _plan("wrap"),
)

_fraction = st.floats(0, 1)
BYTES_ENCODING: st.SearchStrategy[Encoding] = st.one_of(
    st.just(Encoding("bytes")),
    st.builds(Encoding, st.just("bytes"), st.just("truncate"), _fraction),
    st.builds(
        Encoding,
        st.just("bytes"),
        st.sampled_from(("insert", "overwrite")),
        _fraction,
        st.one_of(st.sampled_from(GARBAGE), st.binary(min_size=1, max_size=8)),
    ),
    st.builds(
        Encoding,
        st.just("bytes"),
        st.just("body"),
        data=st.one_of(st.sampled_from(BODIES), st.binary(max_size=64)),
    ),
    st.builds(Encoding, st.just("bytes"), st.sampled_from(("utf-16", "latin-1"))),
)
ENCODING: st.SearchStrategy[Encoding] = st.one_of(
    st.builds(Encoding, st.sampled_from(("dict", "str", "bytes"))), BYTES_ENCODING
)


# --- generating with a plain random generator (the campaign) -------------------------------


def random_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(VALUES)
    if roll < 0.7:
        return rng.choice(DATE_VALUES)
    if roll < 0.8:
        return rng.choice((rng.randint(-(2**70), 2**70), rng.randint(-10, 10), rng.random() * 1e6))
    if roll < 0.9:
        return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 12)))
    return rng.choice(([rng.choice(VALUES)], {rng.choice(KEYS): rng.choice(VALUES)}))


def random_plan(rng: random.Random) -> Plan:
    kind = rng.choice(KINDS)
    pick, other, known = rng.randrange(2**16), rng.randrange(2**16), rng.random() < 0.6
    if kind in ("relink", "nest"):
        key = rng.choice(("item", "answer"))
        return Plan(kind, pick, rng.choice(UNKNOWN_LINK_IDS), key, other, known)
    if kind == "date":
        return Plan(kind, pick, rng.choice(DATE_VALUES))
    if kind == "insert":
        return Plan(kind, pick, random_value(rng), rng.choice(KEYS))
    if kind == "insert-answer":
        value = rng.choice(DATE_VALUES) if rng.random() < 0.3 else random_value(rng)
        return Plan(kind, pick, value, rng.choice(ANSWER_KEYS))
    return Plan(kind, pick, random_value(rng), other=other)


def random_encoding(rng: random.Random) -> Encoding:
    roll = rng.random()
    if roll < 0.6:
        return Encoding(rng.choice(("dict", "str", "bytes")))
    if roll < 0.7:
        return Encoding("bytes", "truncate", rng.random())
    if roll < 0.85:
        data = (
            rng.choice(GARBAGE)
            if rng.random() < 0.7
            else bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        )
        return Encoding("bytes", rng.choice(("insert", "overwrite")), rng.random(), data)
    if roll < 0.95:
        data = (
            rng.choice(BODIES)
            if rng.random() < 0.7
            else bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        )
        return Encoding("bytes", "body", data=data)
    return Encoding("bytes", rng.choice(("utf-16", "latin-1")))
