"""The published scoring Libraries evaluate in other people's FHIRPath: every
definition of every current ``*-logic`` Library, on every case-table response
of its form, gives the same value in fhirpath.js (pinned npm ``fhirpath``, run
by ``cql/fhirpath-library.mjs``) as in fhirpathpy, and neither raises.

Both sides read the Library as published, the way an evaluator that is not
the payer's would: an ``answer`` line's name is that item's answers read from
the response (``answer.value``, typed by the R4 model), an ``absent`` name is
empty, ``%as_of`` is the case's date, and each definition's result is the
variable of its name for those after it. A name a definition reads that the
Library never declares raises on both sides (``eocco329-initial-logic``'s
``II.A applies`` did, before ``absent`` declared it)."""

from __future__ import annotations

import functools
import json
import shutil
from collections import defaultdict
from datetime import date
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.cases import AS_OF, bundled_catalog, load_scoring_cases, package_for
from tests.support.libraries import read_library
from tests.support.node import run_node
from tests.support.paths import ROOT

EVALUATE = ROOT / "cql" / "fhirpath-library.mjs"
R4 = models["r4"]


def plain(value: Any) -> Any:
    """A result as JSON compares it (numbers without their Decimal, dates as text)."""
    return json.loads(json.dumps(value, default=str))


@functools.lru_cache(maxsize=4096)
def compiled(expression: str) -> Any:
    return fhirpathpy.compile(expression, model=R4)


def in_fhirpathpy(library: dict[str, Any], response: dict[str, Any], as_of: date) -> dict[str, Any]:
    env: dict[str, Any] = {}
    for name, link_id in library["answers"].items():
        path = f"QuestionnaireResponse.repeat(item).where(linkId = '{link_id}').answer.value"
        env[name] = compiled(path)(response)
    for name in library["absent"]:
        env[name] = []
    env["as_of"] = compiled(f"@{as_of.isoformat()}")({})
    results: dict[str, Any] = {}
    for name, expression in library["definitions"]:
        try:
            result = compiled(expression)(response, env)
        except Exception as exc:  # fhirpathpy raises bare Exceptions
            env[name] = []
            results[name] = {"error": str(exc)}
            continue
        env[name] = result
        results[name] = plain(result)
    return results


def responses_by_form(catalog: Catalog) -> dict[str, list[tuple[dict[str, Any], date]]]:
    """Every case-table response of the bundled policies, by the id of the
    current form it answers."""
    found: dict[str, list[tuple[dict[str, Any], date]]] = defaultdict(list)
    for param in load_scoring_cases():
        (case,) = param.values
        if case.get("folder"):
            continue
        package = package_for(catalog, case["policy"], case["request"], case.get("drug"))
        response = fill(package, case["answers"])
        found[package.questionnaire["id"]].append((response, case.get("as_of", AS_OF)))
    return found


@pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "cql" / "node_modules" / "fhirpath").exists(),
    reason="fhirpath.js is installed by scripts/install-cql-tools (the test command runs it)",
)
def test_every_published_definition_is_the_same_in_fhirpath_js() -> None:
    catalog = bundled_catalog()
    forms = responses_by_form(catalog)
    assert len(forms) == len(catalog.current)  # every current form has cases
    compared = 0
    for form, cases in sorted(forms.items()):
        path = ROOT / "questionnaires" / f"Library-{form}-logic.json"
        library = read_library(json.loads(path.read_text(encoding="utf-8")))
        request = {
            **library,
            "cases": [{"response": r, "as_of": as_of.isoformat()} for r, as_of in cases],
        }
        in_js = run_node(EVALUATE, request, timeout=300)
        for (response, as_of), js in zip(cases, in_js, strict=True):
            py = in_fhirpathpy(library, response, as_of)
            errors = {n: r for n, r in {**py, **js}.items() if isinstance(r, dict) and "error" in r}
            assert not errors, f"{form}: {errors}"
            differ = {n: (py[n], js[n]) for n in py if py[n] != js[n]}
            assert not differ, f"{form}, response {response.get('id')}: {differ}"
            compared += len(py)
    assert compared > 1000


def test_an_undeclared_name_raises_in_both() -> None:
    """What the comparison would catch: a definition reading a name the
    Library does not declare."""
    if shutil.which("node") is None or not (ROOT / "cql" / "node_modules" / "fhirpath").exists():
        pytest.skip("fhirpath.js is installed by scripts/install-cql-tools")
    library: dict[str, Any] = {
        "answers": {},
        "absent": [],
        "definitions": [["II.A applies", "%combination_therapy = true"]],
    }
    response = {"resourceType": "QuestionnaireResponse", "status": "completed"}
    py = in_fhirpathpy(library, response, AS_OF)
    (js,) = run_node(
        EVALUATE, {**library, "cases": [{"response": response, "as_of": "2026-11-24"}]}
    )
    assert "error" in py["II.A applies"] and "error" in js["II.A applies"]
    # declared absent, it is empty in both
    library["absent"] = ["combination_therapy"]
    assert in_fhirpathpy(library, response, AS_OF)["II.A applies"] == []
