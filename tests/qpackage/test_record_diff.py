"""The Python prefill (qpackage/record.py) against the generated CQL: each
bundled policy's prepopulation Library (its ELM, as ``dtr build`` translated
it) run by cql-execution + cql-exec-fhir (cql/execute.mjs) on a set of test
EHR records, and each question's value compared with what the Python gives
on the same record. The records: tests/cases/record_bundles.yaml (each
``ehr`` kind present, absent, other codes, the statuses counted and not), the
DTR-client end-to-end test's charts (tests/cases/dtr_client.yaml) and the
prepopulation cases' records (tests/cases/prepopulation.yaml)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from builder.prepopulation import PRESCRIBER, Compiled, asks_specialty, load, sources
from policies.loader import bundled_policies
from policies.model import Policy
from policies.names import questionnaire_version
from qpackage.record import Record, answer_codings, prefills
from tests.support.cases import AS_OF, table
from tests.support.node import run_node
from tests.support.paths import ROOT

EXECUTE = ROOT / "cql" / "execute.mjs"


def records() -> list[Any]:
    """Every test record: (name, chart without the PractitionerRole, the role)."""
    found: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = []
    for record in table("record_bundles.yaml")["records"]:
        found.append((record["name"], record["chart"], record.get("role")))
    for case in table("dtr_client.yaml")["cases"]:
        role: dict[str, Any] | None = {
            "resourceType": "PractitionerRole",
            "id": "r1",
            "specialty": [{"coding": [case["specialty"]]}],
        }
        found.append((f"dtr client: {case['name']}", case["chart"], role))
    for case in table("prepopulation.yaml")["cases"]:
        codes = case["specialties"]
        role = (
            {"resourceType": "PractitionerRole", "id": "r1", "specialty": [{"coding": codes}]}
            if codes
            else None
        )
        found.append((f"prepopulation: {case['name']}", case["record"], role))
    return [pytest.param(chart, role, id=name) for name, chart, role in found]


@cache
def _compiled(policy_id: str) -> Compiled:
    policy = next(p for p in POLICIES if p.id == policy_id)
    translation = load(policy, questionnaire_version(policy), [ROOT / "questionnaires"])
    assert translation is not None, f"{policy.id}: no translation of its CQL (dtr build)"
    return translation


def cql_values(policy: Policy, chart: list[dict[str, Any]], role: Any) -> dict[str, Any]:
    """What cql-execution gives each question's definition on one record."""
    return _all_cql_values(policy.id)[_key(chart, role)]


def _key(chart: list[dict[str, Any]], role: Any) -> str:
    return json.dumps([chart, role], sort_keys=True)


@cache
def _all_cql_values(policy_id: str) -> dict[str, dict[str, Any]]:
    """Every test record run by one Node process (execute.mjs ``runs``), by record."""
    assert (EXECUTE.parent / "node_modules").exists(), "run scripts/install-cql-tools"
    policy = next(p for p in POLICIES if p.id == policy_id)
    library = _compiled(policy_id)
    charts = [(p.values[0], p.values[1]) for p in records()]
    request = {
        "elm": {library.name: library.elm},
        "main": library.name,
        "runs": [
            {
                "bundle": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": r} for r in chart],
                },
                "parameters": {PRESCRIBER: role} if asks_specialty(policy) else {},
            }
            for chart, role in charts
        ],
        "expressions": list(sources(policy)),
        "executionDateTime": f"{AS_OF.isoformat()}T12:00:00Z",
    }
    results: list[dict[str, Any]] = run_node(EXECUTE, request)
    return {
        _key(chart, role): result for (chart, role), result in zip(charts, results, strict=True)
    }


def python_values(policy: Policy, chart: list[dict[str, Any]], role: Any) -> dict[str, Any]:
    record = Record.from_resources([*chart, *([role] if role is not None else [])])
    return {
        name: prefill.value
        for name, prefill in prefills(policy, record, answer_codings(policy)).items()
    }


POLICIES = [p for p in bundled_policies() if sources(p)]


@pytest.mark.parametrize(("chart", "role"), records())
def test_python_prefills_as_the_cql_does(chart: list[dict[str, Any]], role: Any) -> None:
    for policy in POLICIES:
        by_cql = cql_values(policy, chart, role)
        by_python = python_values(policy, chart, role)
        assert by_python == by_cql, policy.id


def test_the_records_give_every_source_each_of_its_answers() -> None:
    """Each question an EHR answers is seen answered and left to the
    prescriber across the records; an observation and a specialty also
    answered no; a choice each option a source gives (the comparison above
    can only fail where the records make both sides say something)."""
    for policy in POLICIES:
        results = _all_cql_values(policy.id).values()
        for name, question in sources(policy).items():
            seen = {repr(result[name]) for result in results}
            assert "None" in seen, (policy.id, name)
            kinds = {s.kind for s in question.ehr}
            if question.type == "boolean":
                assert "True" in seen, (policy.id, name)
            if kinds & {"observation", "specialty"}:
                assert "False" in seen, (policy.id, name)
            answers = {s.answer for s in question.ehr if s.answer}
            for answer in answers:
                assert any(f"'code': '{answer}'" in v for v in seen), (policy.id, name, answer)
            if question.type == "date":
                assert any(v.startswith("'") for v in seen), (policy.id, name)
