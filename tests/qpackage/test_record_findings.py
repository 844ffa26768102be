"""What a record already shows, three-valued (qpackage/record.py), through
the public function the CDS service calls: the case table
tests/cases/record_findings.yaml gives per case a policy, a record and the
sections it exercises, each with its status (met, not-met, open), what an
open section still needs and what in the record a finding cites."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from qpackage.catalog import Catalog
from qpackage.record import Record, RecordFindings, evaluate_record
from tests.support.cases import AS_OF, package_for, table


def findings_of(catalog: Catalog, case: dict[str, Any]) -> RecordFindings:
    package = package_for(catalog, case["policy"], "initial")
    if "prefetch" in case:
        record = Record.from_prefetch(case["prefetch"])
    elif "fetched" in case:
        record = Record.from_resources(case["record"], fetched=case["fetched"])
    else:
        record = Record.from_resources(case["record"])
    return evaluate_record(package, record, AS_OF)


def mismatches(case: dict[str, Any], found: RecordFindings) -> list[str]:
    """What differs between a case's expectations and the findings."""
    out: list[str] = []
    by_section = {f.section: f for f in found.findings}
    for name, value in case.get("prefilled", {}).items():
        given = found.prefills[name].value
        given = given["code"] if isinstance(given, dict) else given
        if given != value:
            out.append(f"prefilled {name}: {given!r}, expected {value!r}")
    for section, expected in case["sections"].items():
        finding = by_section.get(section)
        if finding is None:
            out.append(f"{section}: not reported")
            continue
        if finding.status != expected["status"]:
            out.append(f"{section}: {finding.status}, expected {expected['status']}")
        if finding.if_applies != expected.get("if_applies"):
            out.append(
                f"{section}: if it applies {finding.if_applies}, expected {expected.get('if_applies')}"
            )
        if finding.status != "open" and finding.needs:
            out.append(f"{section}: decided, yet needs {finding.needs}")
        if "needs" in expected and [n.link_id for n in finding.needs] != expected["needs"]:
            out.append(
                f"{section}: needs {[n.link_id for n in finding.needs]}, expected {expected['needs']}"
            )
        if "need_kinds" in expected and [n.kind for n in finding.needs] != expected["need_kinds"]:
            out.append(f"{section}: needs kinds {[n.kind for n in finding.needs]}")
        if "need_texts" in expected and [n.text for n in finding.needs] != expected["need_texts"]:
            out.append(f"{section}: needs texts {[n.text for n in finding.needs]}")
        for line in expected.get("read", []):
            if line not in finding.read:
                out.append(f"{section}: does not cite {line!r} (cites {list(finding.read)})")
    for section in case.get("absent", []):
        if section in by_section:
            out.append(f"{section}: reported {by_section[section].status}, expected left out")
    if case.get("all_open"):
        decided = [f.section for f in found.findings if f.status != "open"]
        if decided or any(p.value is not None for p in found.prefills.values()):
            out.append(f"decided with nothing fetched: {decided}")
    return out


@pytest.mark.cases("record_findings.yaml")
def test_the_record_decides_what_it_can(catalog: Catalog, case: dict[str, Any]) -> None:
    found = findings_of(catalog, case)
    assert mismatches(case, found) == []
    # each finding names its section in the policy's words
    package = package_for(catalog, case["policy"], "initial")
    for finding in found.findings:
        assert finding.text == package.index.section_text[finding.section]
    # CRD never decides from missing data: an open section says what it needs
    for finding in found.findings:
        if finding.status == "open" and finding.kind != "information":
            assert finding.needs, finding.section


def test_a_wrong_expectation_is_reported(catalog: Catalog) -> None:
    """The comparison fails a case that expects what the record does not
    show: a section met where it is not, a need left out, a section the
    prefilled answers make inapplicable."""
    (case,) = [c for c in table("record_findings.yaml")["cases"] if "a minor" in c["name"]]
    found = findings_of(catalog, case)
    assert mismatches(case, found) == []
    wrong = copy.deepcopy(case)
    wrong["sections"]["I.A"]["status"] = "met"
    wrong["sections"]["I.B"]["needs"] = []
    wrong["absent"] = ["I.A"]
    assert mismatches(wrong, found) == [
        "I.A: not-met, expected met",
        "I.B: needs ['I.B.prescriber_oncologist'], expected []",
        "I.A: reported not-met, expected left out",
    ]


def test_the_findings_cover_each_status(catalog: Catalog) -> None:
    """The table holds a section met, one not met from the record alone, an
    open one waiting to apply whose record says not met, one needing a
    document, an investigational use, and a case with nothing fetched."""
    seen: set[str] = set()
    for case in table("record_findings.yaml")["cases"]:
        found = findings_of(catalog, case)
        for finding in found.findings:
            seen.add(finding.status)
            if finding.if_applies:
                seen.add(f"open, if it applies {finding.if_applies}")
            if finding.kind == "investigational":
                seen.add("investigational")
            seen.update(f"needs {n.kind}" for n in finding.needs)
        if case.get("all_open"):
            seen.add("nothing fetched")
    assert {
        "met",
        "not-met",
        "open",
        "open, if it applies not-met",
        "open, if it applies met",
        "investigational",
        "needs answer",
        "needs document",
        "nothing fetched",
    } <= seen
