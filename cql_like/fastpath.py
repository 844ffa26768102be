"""A faster path for the FHIRPath the builder writes, with fhirpathpy's
semantics.

The scoring definitions use a small part of FHIRPath: answer variables
(``%name``, ``%`I.D.3```), ``.code``, ``exists()``, ``empty()``, ``not()``,
``=``/``!=``, ``<``/``<=``/``>``/``>=``, ``and``/``or``/``xor``/``implies``,
``in``/``contains``, ``|``, string, integer and boolean literals, ``{}``, and
a full date plus or minus a calendar quantity (``%birth_date + 18 years``).
fhirpathpy evaluates each call through a general tree walk (about 23 µs a
call); here an expression of that subset becomes nested Python closures over
its parse tree (fhirpathpy's own parser, so the two read the same text the
same way).

Two rules keep the semantics fhirpathpy's:

- at compile time, anything outside the subset (another function, a decimal
  or date literal, a type operator…) gives no fast form: the expression is
  evaluated by fhirpathpy;
- at run time, any value the subset is not sure to treat as fhirpathpy does
  (a mix of types in a comparison, a boolean operator on a non-boolean, a
  partial date in arithmetic, a collection where one item is expected…)
  raises :class:`Unsure`, and that call is evaluated by fhirpathpy.

``tests/cql/test_fastpath.py`` proves the two give the same result on every
definition of every form for every case-table response and example, and on
a fuzzed corpus of answers.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

Env = Mapping[str, Any]
Fast = Callable[[Env], list[Any]]

_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CALENDAR = {"year": "years", "years": "years", "month": "months", "months": "months",
             "week": "weeks", "weeks": "weeks", "day": "days", "days": "days"}  # fmt: skip


class Unsure(Exception):
    """A value the fast path does not decide as fhirpathpy would: that call
    goes to fhirpathpy."""


class Unsupported(Exception):
    """A construct outside the subset: the expression has no fast form."""


def compile_fast(tree: dict[str, Any]) -> Fast | None:
    """The fast form of an expression's parse tree (fhirpathpy's AST, as
    :func:`cql_like.gateway.parse_expression` gives it), or None when it
    uses anything outside the subset."""
    try:
        (root,) = tree.get("children", [])
        return _node(root)
    except (Unsupported, ValueError):
        return None


def _node(node: dict[str, Any]) -> Fast:
    kind = node.get("type")
    children = node.get("children", [])
    ops = node.get("terminalNodeText", [])
    if kind in ("TermExpression", "ParenthesizedTerm", "ExternalConstantTerm", "LiteralTerm"):
        (child,) = children
        return _node(child)
    if kind == "ExternalConstant":
        (identifier,) = children
        name = str(identifier.get("text", "")).strip("`")
        if identifier.get("type") != "Identifier" or not name:
            raise Unsupported(kind)
        return lambda env: list(env[name])
    if kind == "StringLiteral":
        return _constant([_string(str(node["text"]))])
    if kind == "NumberLiteral":
        text = str(node["text"])
        if not text.isdigit():
            raise Unsupported("a decimal literal")  # fhirpathpy keeps Decimal semantics
        return _constant([int(text)])
    if kind == "BooleanLiteral":
        return _constant([node["text"] == "true"])
    if kind == "NullLiteral":
        return _constant([])
    if kind == "InvocationExpression":
        return _invocation(children)
    if kind in ("AndExpression", "OrExpression", "ImpliesExpression"):
        return _logic(ops[0], *(_node(c) for c in children))
    if kind == "EqualityExpression" and ops[0] in ("=", "!="):
        return _equality(ops[0], *(_node(c) for c in children))
    if kind == "InequalityExpression":
        return _inequality(ops[0], *(_node(c) for c in children))
    if kind == "MembershipExpression":
        return _membership(ops[0], *(_node(c) for c in children))
    if kind == "UnionExpression":
        return _union(*(_node(c) for c in children))
    if kind == "AdditiveExpression" and ops[0] in ("+", "-"):
        return _date_arithmetic(ops[0], children)
    raise Unsupported(str(kind))


def _constant(value: list[Any]) -> Fast:
    return lambda env: list(value)


def _string(text: str) -> str:
    if len(text) < 2 or text[0] != "'" or text[-1] != "'" or "\\" in text:
        raise Unsupported("a string with escapes")
    return text[1:-1]


def _invocation(children: list[dict[str, Any]]) -> Fast:
    left, right = children
    source = _node(left)
    if right.get("type") == "MemberInvocation":
        (identifier,) = right["children"]
        name = str(identifier.get("text", ""))
        if not name.isidentifier():
            raise Unsupported("a member")

        def member(env: Env) -> list[Any]:
            out: list[Any] = []
            for item in source(env):
                if not isinstance(item, dict):
                    raise Unsure("a member of a primitive")
                value = item.get(name)
                if isinstance(value, list | dict):
                    raise Unsure("a member that is not a primitive")
                if value is not None:
                    out.append(value)
            return out

        return member
    if right.get("type") == "FunctionInvocation":
        (function,) = right["children"]
        identifier = function["children"][0]
        if len(function["children"]) != 1:
            raise Unsupported("a function with parameters")
        name = identifier.get("text")
        if name == "exists":
            return lambda env: [bool(source(env))]
        if name == "empty":
            return lambda env: [not source(env)]
        if name == "not":
            return lambda env: _negated(source(env))
    raise Unsupported("an invocation")


def _negated(values: list[Any]) -> list[Any]:
    if not values:
        return []
    if len(values) == 1 and isinstance(values[0], bool):
        return [not values[0]]
    raise Unsure("not() of a non-boolean")


def _truth(values: list[Any]) -> bool | None:
    if not values:
        return None
    if len(values) == 1 and isinstance(values[0], bool):
        return bool(values[0])
    raise Unsure("a boolean operator on a non-boolean")


def _logic(op: str, left: Fast, right: Fast) -> Fast:
    def both(env: Env) -> list[Any]:
        a, b = _truth(left(env)), _truth(right(env))
        if op == "and":
            value = False if a is False or b is False else (True if a and b else None)
        elif op == "or":
            value = (
                True if a is True or b is True else (False if a is False and b is False else None)
            )
        elif op == "implies":
            value = True if a is False or b is True else (b if a is True else None)
        else:
            raise Unsure(op)
        return [] if value is None else [value]

    if op not in ("and", "or", "implies"):
        raise Unsupported(op)
    return both


def _plain_kind(value: Any) -> str:
    """The kind of a primitive, where the subset compares values: booleans
    apart from numbers (Python counts True as 1; fhirpathpy's results then
    depend on its own rules)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    raise Unsure("a comparison of a value that is not a boolean, integer or string")


def _single(values: list[Any]) -> Any:
    if len(values) != 1:
        raise Unsure("a collection where one item is expected")
    return values[0]


def _equality(op: str, left: Fast, right: Fast) -> Fast:
    def equal(env: Env) -> list[Any]:
        a, b = left(env), right(env)
        if not a or not b:
            return []
        x, y = _single(a), _single(b)
        if _plain_kind(x) != _plain_kind(y):
            raise Unsure("values of two kinds")
        return [(x == y) == (op == "=")]

    return equal


def _ordered(value: Any) -> Any:
    kind = _plain_kind(value)
    if kind == "integer":
        return value
    if kind == "string" and _FULL_DATE.fullmatch(value):
        return value  # full ISO dates order as their text does
    raise Unsure("an order of values that are not integers or full dates")


def _inequality(op: str, left: Fast, right: Fast) -> Fast:
    compare: Callable[[Any, Any], bool] = {
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }[op]

    def ordered(env: Env) -> list[Any]:
        a, b = left(env), right(env)
        if not a or not b:
            return []
        x, y = _ordered(_single(a)), _ordered(_single(b))
        if type(x) is not type(y):
            raise Unsure("an order of two kinds")
        return [compare(x, y)]

    return ordered


def _membership(op: str, left: Fast, right: Fast) -> Fast:
    collection, item = (left, right) if op == "contains" else (right, left)
    if op not in ("contains", "in"):
        raise Unsupported(op)

    def member(env: Env) -> list[Any]:
        one, many = item(env), collection(env)
        if not one:
            return []
        x = _single(one)
        kind = _plain_kind(x)
        for y in many:
            if _plain_kind(y) != kind:
                raise Unsure("a membership of two kinds")
        return [x in many]

    return member


def _union(left: Fast, right: Fast) -> Fast:
    def union(env: Env) -> list[Any]:
        out: list[Any] = []
        for value in [*left(env), *right(env)]:
            _plain_kind(value)
            if not any(_plain_kind(v) == _plain_kind(value) and v == value for v in out):
                out.append(value)
        return out

    return union


def _date_arithmetic(op: str, children: list[dict[str, Any]]) -> Fast:
    left, right = children
    amount, unit = _calendar_quantity(right)
    sign = 1 if op == "+" else -1
    source = _node(left)

    def shifted(env: Env) -> list[Any]:
        values = source(env)
        if not values:
            return []
        value = _single(values)
        if not (isinstance(value, str) and _FULL_DATE.fullmatch(value)):
            raise Unsure("arithmetic on what is not a full date")
        return [_shift(date.fromisoformat(value), sign * amount, unit).isoformat()]

    return shifted


def _calendar_quantity(node: dict[str, Any]) -> tuple[int, str]:
    """``18 years`` as (18, "years"): an integer and a calendar unit, nothing else."""
    while node.get("type") in ("TermExpression", "LiteralTerm"):
        (node,) = node["children"]
    if node.get("type") != "QuantityLiteral":
        raise Unsupported("arithmetic on what is not a calendar quantity")
    (quantity,) = node["children"]
    number, *rest = quantity.get("terminalNodeText", [])
    unit_node = next((c for c in quantity.get("children", []) if c.get("type") == "Unit"), None)
    if not number.isdigit() or unit_node is None or rest:
        raise Unsupported("a quantity that is not an integer count of a calendar unit")
    unit_text = str(node.get("text", "")).removeprefix(number).strip()
    if unit_text not in _CALENDAR:
        raise Unsupported(f"a quantity in {unit_text!r}")
    return int(number), _CALENDAR[unit_text]


def _shift(day: date, amount: int, unit: str) -> date:
    if unit == "days":
        return day + timedelta(days=amount)
    if unit == "weeks":
        return day + timedelta(weeks=amount)
    months = amount * 12 if unit == "years" else amount
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    # the same day of the month, or the month's last when it has no such day
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
