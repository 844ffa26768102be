"""Routing chains of yes/no questions (emergency? → continuation? →
funded?), on the fixture tests/fixtures/policies/chain (its worked examples
are the cases: each step approving its way, a denial citing only the
section that decided it, a pend naming only the section whose question is
unanswered). Here: what marks a step as a route — the same chain without
`kind: route` reads as alternatives, each of which the member fails, and a
denial cites every one, as WHA's step therapy does."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from qpackage.catalog import Catalog
from scoring import score
from scoring.fill import fill
from tests.support.cases import package_for
from tests.support.paths import FIXTURES

AS_OF = date(2026, 11, 24)
CHAIN = FIXTURES / "chain" / "chain.yaml"


def _catalog(folder: Path, routes: bool) -> Catalog:
    text = CHAIN.read_text(encoding="utf-8")
    if not routes:
        text = text.replace("kind: route", "kind: criterion")
    (folder / "chain.yaml").write_text(text, encoding="utf-8")
    return Catalog.from_folder(folder)


@pytest.mark.parametrize(
    ("routes", "unmet", "renewal_unmet", "renewal_missing"),
    [
        (True, ["Funded"], ["Renewal.Response"], ["Renewal.Response"]),
        (
            False,
            ["Emergency", "Continuation", "Funded"],
            ["Renewal.Emergency", "Renewal.Continuation", "Renewal.Response"],
            ["Renewal.Emergency", "Renewal.Continuation", "Renewal.Response"],
        ),
    ],
    ids=["routes", "alternatives"],
)
def test_a_route_is_no_reason(
    tmp_path: Path,
    routes: bool,
    unmet: list[str],
    renewal_unmet: list[str],
    renewal_missing: list[str],
) -> None:
    catalog = _catalog(tmp_path, routes)
    initial = package_for(catalog, "fixture-chain", "initial")
    answers = {"birth_date": "1970-03-15", "emergency": False, "continuation": False}
    denied = score(initial, fill(initial, {**answers, "funded": False}), AS_OF)
    assert (denied.outcome, denied.unmet) == ("denied", unmet)
    renewal = package_for(catalog, "fixture-chain", "renewal")
    answers = {"renewal_emergency": False, "renewal_continuation": False}
    denied = score(renewal, fill(renewal, {**answers, "response": False}), AS_OF)
    assert (denied.outcome, denied.unmet) == ("denied", renewal_unmet)
    pended = score(renewal, fill(renewal, answers), AS_OF)
    assert pended.outcome == "pended"
    assert (pended.missing, pended.missing_questions) == (
        renewal_missing,
        ["Renewal.Response.response"],
    )
