"""The fast path (``cql_like/fastpath.py``) equals fhirpathpy: every call the
scorer makes — every definition of every form, for every case-table response
and example, and for a fuzzed corpus of answers to every current form — is
evaluated both ways, with the variables the engine passes, and must give the
same result (or the fast path must step aside: outside its subset, or
unsure of a value). A deliberately wrong fast form must be caught."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cql_like.engine import CompiledRequest
from cql_like.fastpath import Unsure
from cql_like.gateway import DefinitionError, Expression, fast_form
from qpackage.catalog import score_json
from scoring import InvalidInput
from scoring.fill import fill
from scoring.response import check_answers
from tests.support.cases import (
    AS_OF,
    bundled_catalog,
    package_for,
    score_every_case_and_example,
)

Seen = Counter[str]


@pytest.fixture()
def compared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Every evaluation the scorer makes, done both ways and compared."""
    seen: Seen = Counter()

    def both(self: Expression, resource: Any, variables: Any) -> list[Any]:
        env = {name: variables[name] for name in self.reads if name in variables}
        try:
            reference: list[Any] | DefinitionError = self.evaluate_in_fhirpathpy(resource, env)
        except DefinitionError as exc:
            reference = exc
        fast = fast_form(self.source)
        if fast is None:
            seen["outside the subset"] += 1
        else:
            try:
                got = fast(env)
            except (Unsure, KeyError):
                seen["unsure"] += 1
            else:
                seen["fast"] += 1
                assert got == reference, (self.name, self.source, env)
        if isinstance(reference, DefinitionError):
            raise reference
        return reference

    monkeypatch.setattr(Expression, "evaluate", both)
    yield seen


def test_every_case_and_example(compared: Seen) -> None:
    score_every_case_and_example()
    # most calls take the fast path; the comparison ran on them
    assert compared["fast"] > 10 * (compared["unsure"] + compared["outside the subset"])


def _packages() -> list[CompiledRequest]:
    return sorted(bundled_catalog().current.values(), key=lambda p: p.questionnaire["id"])


def _answer(spec: Any) -> st.SearchStrategy[Any]:
    """A value a prescriber might give an item, valid or at an edge."""
    kind = spec.type
    if kind == "boolean":
        return st.booleans()
    if kind == "choice":
        codes = sorted(code for _system, code in spec.options) or ["x"]
        return st.sampled_from(codes)
    if kind == "date":
        days = st.dates(min_value=date(1925, 1, 1), max_value=date(2027, 12, 31))
        return st.one_of(
            days.map(date.isoformat),
            st.sampled_from(["2008-02-29", "2008-11-24", "2008-11-25", "2008", "2008-11"]),
        )
    if kind in ("integer", "decimal"):
        return st.integers(min_value=0, max_value=400)
    return st.just("text")


@st.composite
def answered(draw: st.DrawFn) -> tuple[CompiledRequest, dict[str, Any]]:
    package = draw(st.sampled_from(_packages()))
    answers: dict[str, Any] = {}
    for name, link in sorted(package.link_of.items()):
        spec = package.items.get(link)
        if spec is None or spec.type in ("group", "display", "attachment"):
            continue
        if draw(st.booleans()):
            answers[name] = draw(_answer(spec))
    return package, answers


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answered())
def test_fuzzed_answers(compared: Seen, drawn: tuple[CompiledRequest, dict[str, Any]]) -> None:
    package, answers = drawn
    # as a renderer sends it: no answer to an item the others disable
    names = {link: name for name, link in package.link_of.items()}
    try:
        for _ in range(5):
            checked = check_answers(package, fill(package, answers), prune_disabled=True)
            if not checked.pruned:
                break
            for link in checked.pruned:
                answers.pop(names.get(link, link), None)
        score_json(bundled_catalog(), json.dumps(fill(package, answers)), AS_OF)
    except InvalidInput:
        pass  # an answer the form refuses (out of bounds): all evaluated was compared


def test_a_wrong_fast_form_is_caught(compared: Seen, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: a fast path that reads `<=` as `<` differs
    on a birthday."""
    from cql_like import fastpath

    real = fastpath._inequality

    def off_by_one(op: str, left: Any, right: Any) -> Any:
        return real("<" if op == "<=" else op, left, right)

    monkeypatch.setattr(fastpath, "_inequality", off_by_one)
    fast_form.cache_clear()
    try:
        package = package_for(bundled_catalog(), "eocco329", "initial")
        answers = {"birth_date": "2008-11-24"}  # 18 today: `+ 18 years <= %as_of` holds
        with pytest.raises(AssertionError):
            score_json(bundled_catalog(), fill(package, answers), AS_OF)
    finally:
        fast_form.cache_clear()
