"""The one gateway to fhirpathpy.

Every FHIRPath expression in the project is compiled and evaluated here, so
the library's sharp edges are handled once:

- the R4 model is always passed (without it choice types such as
  ``answer.value`` silently evaluate to nothing);
- inputs are plain JSON dicts, never pydantic objects (which also evaluate to
  nothing);
- ``%resource`` and ``%context`` are set explicitly, and the evaluation date is
  the ``%as_of`` variable (``today()`` lives in a module global of fhirpathpy
  and would make results depend on the clock);
- each expression is compiled once; results come back with ``Decimal``
  turned into ``int``/``float``;
- a definition's result is three-valued: ``[true]``, ``[false]`` or ``[]``
  (unknown), anything else is an error in the definition, not in the input.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any

from cql_like.fastpath import Fast, Unsure, compile_fast


class DefinitionError(RuntimeError):
    """A definition that does not compile, or evaluates to something that is
    not a truth value: a fault of the policy package, never of the input."""


@dataclass(frozen=True)
class Expression:
    """A compiled FHIRPath expression."""

    name: str
    source: str
    # fhirpathpy's function; None until first evaluated when compiled lazily
    _compiled: Any = field(default=None, repr=False, compare=False)

    def _function(self) -> Any:
        if self._compiled is None:
            # frozen: set once, as cached_property does
            object.__setattr__(self, "_compiled", _compile(self.name, self.source))
        return self._compiled

    @cached_property
    def _fast(self) -> Fast | None:
        return fast_form(self.source)

    @cached_property
    def reads(self) -> frozenset[str]:
        """The ``%names`` it reads (parsed once per text, when first asked)."""
        return _reads(self.source)

    def evaluate(self, resource: Mapping[str, Any], variables: Mapping[str, Any]) -> list[Any]:
        # only what it reads: fhirpathpy copies every variable it is given on
        # each call, and a form of a thousand items has hundreds of them
        env = {name: variables[name] for name in self.reads if name in variables}
        fast = self._fast
        if fast is not None:
            try:
                return fast(env)
            except (Unsure, KeyError):
                pass  # fhirpathpy decides this call (and says what is wrong)
        return self.evaluate_in_fhirpathpy(resource, env)

    def evaluate_in_fhirpathpy(self, resource: Mapping[str, Any], env: dict[str, Any]) -> list[Any]:
        """fhirpathpy's result, the reference the fast path must equal."""
        env = dict(env)
        env.setdefault("resource", resource)
        env.setdefault("context", resource)
        function = self._function()
        try:
            result = function(resource, env)
        except Exception as exc:  # fhirpathpy raises bare Exceptions for bad input
            raise DefinitionError(f'"{self.name}" failed: {exc}') from exc
        return [plain(value) for value in result]

    def truth(self, resource: Mapping[str, Any], variables: Mapping[str, Any]) -> bool | None:
        """Three-valued: True, False, or None when the result is empty (unknown)."""
        return self.truth_of(self.evaluate(resource, variables))

    def truth_of(self, result: list[Any]) -> bool | None:
        if result == []:
            return None
        if len(result) == 1 and isinstance(result[0], bool):
            return result[0]
        raise DefinitionError(f'"{self.name}" is not a truth value: {result!r}')


@lru_cache(maxsize=8192)
def _compiled(source: str) -> Any:
    """fhirpathpy's compiled function for a source text, parsed once: the
    catalog holds every released version of every form, and most of their
    definitions are the same text (850 in the bundled catalog, 128 distinct),
    while parsing with fhirpathpy's ANTLR parser is most of what compiling the
    catalog costs. A compiled function is made to be called again and again
    (that is fhirpathpy's reason for ``compile``), so one serves every
    expression of that text."""
    # imported here: an expression the fast path decides never needs it, and
    # a one-shot `dtr score` on a cached catalog (qpackage.cache) then starts
    # without it
    import fhirpathpy
    from fhirpathpy.models import models

    return fhirpathpy.compile(source, model=models["r4"])


def _compile(name: str, source: str) -> Any:
    try:
        return _compiled(source)
    except Exception as exc:
        raise DefinitionError(f'"{name}" does not compile: {source!r}: {exc}') from exc


def compile_expression(name: str, source: str, *, eager: bool = True) -> Expression:
    """An expression, compiled now (``eager``: the service compiles every
    definition at start, so no request pays for it), or when first evaluated
    (a one-shot command such as ``dtr score`` evaluates a few of the
    catalog's hundreds)."""
    return Expression(name=name, source=source, _compiled=_compile(name, source) if eager else None)


# parse trees read back with a cached catalog (qpackage.cache), by source text
_SEEDED: dict[str, dict[str, Any]] = {}


@lru_cache(maxsize=8192)
def _tree(source: str) -> dict[str, Any]:
    seeded = _SEEDED.get(source)
    return seeded if seeded is not None else parse_expression(source)


def parse_trees(sources: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each source's parse tree (plain data, so it can be kept with a cached
    catalog): fhirpathpy's ANTLR parser is most of what a definition's first
    evaluation costs."""
    return {source: _tree(source) for source in sources}


def seed_trees(trees: Mapping[str, dict[str, Any]]) -> None:
    """Parse trees made by :func:`parse_trees` from the same texts, with the
    same fhirpathpy (the cache's key says so), used instead of parsing."""
    _SEEDED.update(trees)


def _reads(source: str) -> frozenset[str]:
    return _constants(_tree(source))


@lru_cache(maxsize=8192)
def fast_form(source: str) -> Fast | None:
    """The fast path's form of an expression (:mod:`cql_like.fastpath`), or
    None when it is outside the subset or does not parse (fhirpathpy then
    says why)."""
    try:
        return compile_fast(_tree(source))
    except ExpressionSyntaxError:
        return None


def _constants(node: dict[str, Any]) -> frozenset[str]:
    """The ``%names`` an expression's parse tree reads."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current.get("type") == "ExternalConstant":
            children = current.get("children") or [{}]
            found.add(str(children[0].get("text", "")).strip("`"))
        stack.extend(current.get("children", []))
    return frozenset(found)


class Memo:
    """Results of expressions by the values of the variables they read: for
    the build-time exploration, which scores thousands of responses that
    differ in one answer. (Not for the service: it would grow without bound.)"""

    def __init__(self) -> None:
        self.results: dict[tuple[str, str], Any] = {}

    def evaluate(
        self, expression: Expression, resource: Mapping[str, Any], variables: Mapping[str, Any]
    ) -> list[Any]:
        names = sorted(expression.reads)
        if "resource" in names or "context" in names:
            return expression.evaluate(resource, variables)
        key = (expression.source, json.dumps([variables.get(n) for n in names], default=str))
        if key not in self.results:
            self.results[key] = expression.evaluate(resource, variables)
        return list(self.results[key])


def plain(value: Any) -> Any:
    """A FHIRPath result value as plain JSON-like Python (no Decimal)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


_PARTIAL = re.compile(r"^([0-9]{4})(-([0-9]{2}))?$")


def date_span(value: object) -> tuple[str, str] | None:
    """The first and last day a date of year or month precision stands for
    (``'2008'`` → 2008-01-01 … 2008-12-31); None for a full date. FHIRPath
    compares dates of different precision as unknown or, in fhirpathpy, as if
    the missing parts were the earliest: neither may decide a criterion."""
    if not isinstance(value, str):
        return None
    match = _PARTIAL.match(value)
    if not match:
        return None
    year = int(match.group(1))
    if match.group(3) is None:
        return f"{year:04d}-01-01", f"{year:04d}-12-31"
    month = int(match.group(3))
    last = calendar.monthrange(year, month)[1]
    return f"{year:04d}-{month:02d}-01", f"{year:04d}-{month:02d}-{last:02d}"


def variable(name: str) -> str:
    """``%name`` for any name: delimited when it is not a plain identifier
    (section ids such as ``I.D.3`` contain dots)."""
    if name.replace("_", "a").isalnum() and not name[0].isdigit():
        return f"%{name}"
    return f"%`{name}`"


class ExpressionSyntaxError(ValueError):
    """An expression fhirpathpy's parser does not accept whole."""


def parse_expression(source: str) -> dict[str, Any]:
    """The parse tree of an expression (fhirpathpy's own grammar and AST, each
    node with its ``source`` text), refusing what its default parser silently
    recovers from: a syntax error anywhere, or text left over after a complete
    expression."""
    from antlr4 import CommonTokenStream, InputStream, Token  # fhirpathpy's own dependency
    from antlr4.error.ErrorListener import ErrorListener
    from antlr4.tree.Tree import ParseTreeWalker
    from fhirpathpy.parser.ASTPathListener import ASTPathListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, recognizer, symbol, line, column, msg, e):  # type: ignore[no-untyped-def]
            raise ExpressionSyntaxError(f"column {column + 1}: {msg}")

    lexer = FHIRPathLexer(InputStream(source))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Raise())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(Raise())

    class Spans(ASTPathListener):
        """Each node keeps its own text as written (``source``): fhirpathpy
        records text for a few node types only, with the spaces dropped, and a
        message about a part of an expression quotes the author's words."""

        def pushNode(self, nodeType, ctx):  # type: ignore[no-untyped-def]
            super().pushNode(nodeType, ctx)  # type: ignore[no-untyped-call]
            if ctx.start is not None and ctx.stop is not None:
                self.parentStack[-1]["source"] = source[ctx.start.start : ctx.stop.stop + 1]

    listener = Spans()  # type: ignore[no-untyped-call]
    tree = parser.expression()
    if tokens.LA(1) != Token.EOF:
        left = tokens.LT(1)
        raise ExpressionSyntaxError(f"column {left.column + 1}: unexpected {left.text!r}")
    ParseTreeWalker().walk(listener, tree)
    return listener.parentStack[0]
