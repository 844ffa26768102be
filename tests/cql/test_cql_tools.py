"""The Node.js CQL tooling under cql/: CQL translated to ELM by the official
translator (cql/translate.mjs) and the ELM run by cql-execution + cql-exec-fhir
against one patient's FHIR R4 Bundle (cql/execute.mjs).

Needs `scripts/install-cql-tools` (npm packages in cql/node_modules)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import ROOT

CQL_DIR = ROOT / "cql"

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NUCC = "http://nucc.org/provider-taxonomy"

# Helpers in an included library: checks that `include` resolves both in the
# translator and in cql-execution's Repository. No FHIRHelpers: explicit `.value`.
COMMON_CQL = """\
library DemoCommon version '1.0.0'

using FHIR version '4.0.1'

define function "Has Coding"(codings List<FHIR.Coding>, system String, code String):
  exists (codings C where C.system.value = system and C.code.value = code)

define function "Code In"(codings List<FHIR.Coding>, system String):
  First(codings C where C.system.value = system return C.code.value)
"""

MAIN_CQL = f"""\
library DemoDtr version '1.0.0'

using FHIR version '4.0.1'

include DemoCommon version '1.0.0' called Common

// PractitionerRole has no Patient compartment: it can also be passed in.
parameter "Ordering Role" FHIR.PractitionerRole

context Patient

define "Birth Date":
  Patient.birthDate.value

define "Age In Years":
  AgeInYears()

define "Has Type 2 Diabetes":
  exists ([Condition] C where Common."Has Coding"(C.code.coding, '{SNOMED}', '44054006'))

define "Diabetes Code":
  First([Condition] C
    return First(C.code.coding X where X.system.value = '{SNOMED}'
      return System.Code {{ code: X.code.value, system: X.system.value, display: X.display.value }}))

define "Has Detected Covid Test":
  exists ([Observation] O
    where Common."Has Coding"(O.code.coding, '{LOINC}', '94500-6')
      and Common."Has Coding"((O.value as FHIR.CodeableConcept).coding, '{SNOMED}', '260373001'))

// All MedicationRequests, filtered by coding here: a code filter on the
// retrieve (`[MedicationRequest: ...]`) is what breaks with cql-exec-fhir.
define "Has Metformin Order":
  exists ([MedicationRequest] M
    where Common."Has Coding"((M.medication as FHIR.CodeableConcept).coding, '{RXNORM}', '860975'))

define "Specialty From Bundle":
  First([PractitionerRole] R return Common."Code In"(R.specialty.coding, '{NUCC}'))

define "Specialty From Parameter":
  Common."Code In"("Ordering Role".specialty.coding, '{NUCC}')
"""

ROLE: dict[str, Any] = {
    "resourceType": "PractitionerRole",
    "id": "role-endo",
    "practitioner": {"reference": "Practitioner/dr-1"},
    "specialty": [{"coding": [{"system": NUCC, "code": "207RE0101X", "display": "Endocrinology"}]}],
}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display is not None:
        out["display"] = display
    return {"coding": [out]}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-17"}
SUBJECT = {"reference": "Patient/p1"}

FULL = bundle(
    PATIENT,
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": SUBJECT,
        "code": coding(SNOMED, "44054006", "Type 2 diabetes mellitus"),
    },
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": SUBJECT,
        "code": coding(LOINC, "94500-6"),
        "valueCodeableConcept": coding(SNOMED, "260373001"),
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": coding(RXNORM, "860975"),
    },
    ROLE,
)

# Same kinds of resources, none of which answers: another condition, the test
# with a "not detected" result, another drug, no PractitionerRole.
PARTIAL = bundle(
    {"resourceType": "Patient", "id": "p2"},
    {
        "resourceType": "Condition",
        "id": "c2",
        "subject": SUBJECT,
        "code": coding(SNOMED, "38341003"),
    },
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "subject": SUBJECT,
        "code": coding(LOINC, "94500-6"),
        "valueCodeableConcept": coding(SNOMED, "260415000"),
    },
    {
        "resourceType": "MedicationRequest",
        "id": "m2",
        "status": "active",
        "intent": "order",
        "subject": SUBJECT,
        "medicationCodeableConcept": coding(RXNORM, "197361"),
    },
)

FULL_EXPECTED: dict[str, Any] = {
    "Birth Date": "1970-05-17",
    "Age In Years": 55,
    "Has Type 2 Diabetes": True,
    "Diabetes Code": {"system": SNOMED, "code": "44054006", "display": "Type 2 diabetes mellitus"},
    "Has Detected Covid Test": True,
    "Has Metformin Order": True,
    "Specialty From Bundle": "207RE0101X",
    "Specialty From Parameter": "207RE0101X",
}

PARTIAL_EXPECTED: dict[str, Any] = {
    "Birth Date": None,
    "Age In Years": None,
    "Has Type 2 Diabetes": False,
    "Diabetes Code": {"system": SNOMED, "code": "38341003", "display": None},
    "Has Detected Covid Test": False,
    "Has Metformin Order": False,
    "Specialty From Bundle": None,
    "Specialty From Parameter": None,
}


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail(
            "node is not installed (apt-get install nodejs npm), then run scripts/install-cql-tools"
        )
    if not (CQL_DIR / "node_modules" / ".package-lock.json").is_file():
        pytest.fail("cql/node_modules is missing: run scripts/install-cql-tools")
    return found


def run(script: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node(), str(CQL_DIR / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def translate(libraries: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run("translate.mjs", stdin=json.dumps({"libraries": libraries}))


@pytest.fixture(scope="module")
def elm() -> dict[str, Any]:
    result = translate({"DemoDtr": MAIN_CQL, "DemoCommon": COMMON_CQL})
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def execute(request: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run("execute.mjs", stdin=json.dumps(request))


def test_translation_gives_elm_for_each_library(elm: dict[str, Any]) -> None:
    assert sorted(elm) == ["DemoCommon", "DemoDtr"]
    library = elm["DemoDtr"]["library"]
    assert library["identifier"] == {"id": "DemoDtr", "version": "1.0.0"}
    assert library["includes"]["def"][0]["path"] == "DemoCommon"
    info = library["annotation"][0]
    assert info["type"] == "CqlToElmInfo"
    assert info["translatorVersion"].startswith("5.3.")
    names = {d["name"] for d in library["statements"]["def"]}
    assert set(FULL_EXPECTED) <= names


@pytest.mark.parametrize(
    ("record", "parameters", "expected"),
    [
        pytest.param(FULL, {"Ordering Role": ROLE}, FULL_EXPECTED, id="full"),
        pytest.param(PARTIAL, {}, PARTIAL_EXPECTED, id="partial"),
    ],
)
def test_execution_answers_each_expression(
    elm: dict[str, Any],
    record: dict[str, Any],
    parameters: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    result = execute(
        {
            "elm": elm,
            "main": "DemoDtr",
            "bundle": record,
            "parameters": parameters,
            "executionDateTime": "2025-06-01T12:00:00Z",
        }
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


def test_execution_of_chosen_expressions(elm: dict[str, Any]) -> None:
    chosen = ["Has Metformin Order", "Birth Date"]
    result = execute({"elm": elm, "main": "DemoDtr", "bundle": FULL, "expressions": chosen})
    assert result.returncode == 0, result.stderr
    assert list(json.loads(result.stdout).items()) == [
        ("Has Metformin Order", True),
        ("Birth Date", "1970-05-17"),
    ]


def test_several_runs_in_one_process_each_alone(elm: dict[str, Any]) -> None:
    """``runs``: each record with its own parameters, as one request each
    would give, in order; ``runs`` beside ``bundle`` is refused."""
    runs = [
        {"bundle": FULL, "parameters": {"Ordering Role": ROLE}},
        {"bundle": PARTIAL},
        {"bundle": FULL, "parameters": {}},
    ]
    common = {"elm": elm, "main": "DemoDtr", "executionDateTime": "2025-06-01T12:00:00Z"}
    result = execute({**common, "runs": runs})
    assert result.returncode == 0, result.stderr
    alone = []
    for one in runs:
        single = execute({**common, "bundle": one["bundle"], "parameters": one.get("parameters")})
        assert single.returncode == 0, single.stderr
        alone.append(json.loads(single.stdout))
    assert json.loads(result.stdout) == alone
    assert alone[:2] == [FULL_EXPECTED, PARTIAL_EXPECTED]
    both = execute({**common, "runs": runs, "bundle": FULL})
    assert both.returncode == 1
    assert '"runs"' in both.stderr
    two_patients = {"resourceType": "Bundle", "entry": [*PARTIAL["entry"], *PARTIAL["entry"]]}
    second = execute({**common, "runs": [runs[0], {"bundle": two_patients}]})
    assert second.returncode == 1
    assert '"runs"[1].bundle must hold exactly one Patient (found 2)' in second.stderr


def test_execution_errors_exit_1(elm: dict[str, Any]) -> None:
    missing_include = execute(
        {"elm": {"DemoDtr": elm["DemoDtr"]}, "main": "DemoDtr", "bundle": FULL}
    )
    assert missing_include.returncode == 1
    assert "DemoCommon" in missing_include.stderr
    assert missing_include.stdout == ""

    unknown = execute({"elm": elm, "main": "DemoDtr", "bundle": FULL, "expressions": ["Nope"]})
    assert unknown.returncode == 1
    assert '"Nope"' in unknown.stderr

    wrong_type = {"resourceType": "Patient", "id": "x"}
    bad_parameter = execute(
        {"elm": elm, "main": "DemoDtr", "bundle": FULL, "parameters": {"Ordering Role": wrong_type}}
    )
    assert bad_parameter.returncode == 1
    assert "Ordering Role" in bad_parameter.stderr


def test_files_interface_writes_name_json(tmp_path: Path, elm: dict[str, Any]) -> None:
    (tmp_path / "DemoDtr.cql").write_text(MAIN_CQL, encoding="utf-8")
    (tmp_path / "DemoCommon.cql").write_text(COMMON_CQL, encoding="utf-8")
    out = tmp_path / "elm"
    result = run(
        "translate.mjs",
        "--out",
        str(out),
        str(tmp_path / "DemoDtr.cql"),
        str(tmp_path / "DemoCommon.cql"),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["DemoCommon.json", "DemoDtr.json"]
    for name in ("DemoDtr", "DemoCommon"):
        assert json.loads((out / f"{name}.json").read_text(encoding="utf-8")) == elm[name]


def test_translation_is_deterministic(tmp_path: Path) -> None:
    libraries = {"DemoDtr": MAIN_CQL, "DemoCommon": COMMON_CQL}
    first = translate(libraries)
    second = translate(dict(reversed(libraries.items())))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.encode() == second.stdout.encode()

    source = tmp_path / "DemoCommon.cql"
    source.write_text(COMMON_CQL, encoding="utf-8")
    written = []
    for _ in range(2):
        assert run("translate.mjs", str(source)).returncode == 0
        written.append((tmp_path / "DemoCommon.json").read_bytes())
    assert written[0] == written[1]


def test_syntax_error_exits_1_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.cql"
    broken.write_text(
        "library Broken version '1'\n"
        "using FHIR version '4.0.1'\n"
        "context Patient\n"
        'define "Fine": Patient.birthDate.value\n'
        "define \"Oops\": exists ([Condition] C where C.code.coding.code.value = = '1')\n",
        encoding="utf-8",
    )
    result = run("translate.mjs", str(broken))
    assert result.returncode == 1
    assert f"{broken}:5:" in result.stderr
    assert not (tmp_path / "Broken.json").exists()

    over_stdin = translate({"Broken": broken.read_text(encoding="utf-8")})
    assert over_stdin.returncode == 1
    assert "Broken:5:" in over_stdin.stderr
    assert over_stdin.stdout == ""


def test_error_in_included_library_is_reported_against_it() -> None:
    common = COMMON_CQL.replace("C.system.value = system", "C.system.value = 1")
    result = translate({"DemoDtr": MAIN_CQL, "DemoCommon": common})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("DemoCommon:6:")]
    assert lines, result.stderr
