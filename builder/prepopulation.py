"""Prepopulation from EHR data: the CQL a DTR client runs, generated from the
policy data, and its ELM.

A question whose policy data names where an EHR holds its answer (``ehr``:
the Patient's birth date, a Condition, an Observation's result, a
MedicationRequest or MedicationStatement, the prescriber's specialty) gets an
``initialExpression`` in CQL. All of a policy's expressions live in one CQL
Library, ``{Policy}Prepopulation``, generated here (text from a jinja2
template) and compiled to ELM by the CQL-to-ELM translator
(``cql/translate.mjs``, npm ``@cqframework/cql``) when ``dtr build`` runs:

- the Library (``{policy}-prepopulation``) carries ``text/cql`` and
  ``application/elm+json``; the Questionnaire names it with ``cqf-library``
  ``url|version`` and declares the ``launchContext`` it reads (``patient``;
  ``user`` — the prescriber's PractitionerRole — when a specialty is asked);
- the Library declares a ``dataRequirement`` per retrieve (type, the codes
  it filters on, the elements it reads) and its parameters (the prescriber's
  PractitionerRole in, each question's definition out), so a client that
  fetches only what a Library declares fetches what the CQL reads;
- each prefilled item's ``initialExpression`` is the question's definition
  by name, ``text/cql-identifier``, with the Library's canonical in
  ``reference`` and the DTR ``alternativeExpression`` holding its ELM.

The translation is kept in ``questionnaires/cql/{policy}-{version}.json``
with the SHA-256 of the CQL it came from, so the Questionnaires are built
(and the service starts) without Node.js; ``dtr build`` translates again only
when the CQL changes, and the drift test checks both the CQL and that the
translator still gives the same ELM.

FHIRHelpers is not on npm: the CQL reads FHIR primitives through ``.value``.
Absence of a record never answers *false* (the prescriber answers); an
Observation's *absent* result, or a prescriber whose specialties are all
others, does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from policies.index import index_policy
from policies.model import Coding, EhrSource, Policy, Question, walk

CQL_FOLDER = "cql"
ALTERNATIVE_EXPRESSION = (
    "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/alternativeExpression"
)
INITIAL_EXPRESSION = (
    "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression"
)
LAUNCH_CONTEXT = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-launchContext"
LAUNCH_CONTEXT_SYSTEM = "http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext"
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
PRESCRIBER = "Prescriber"  # the CQL parameter the launch context ``user`` fills
ROOT = Path(__file__).resolve().parent.parent
TRANSLATE = ROOT / "cql" / "translate.mjs"


class PrepopulationError(ValueError):
    """The CQL of a policy cannot be compiled (or its translation is missing)."""


def library_name(policy: Policy) -> str:
    """A CQL identifier: ``eocco329`` → ``Eocco329Prepopulation``."""
    parts = re.split(r"[^A-Za-z0-9]+", policy.id)
    return "".join(p[:1].upper() + p[1:] for p in parts if p) + "Prepopulation"


def library_id(policy: Policy) -> str:
    return f"{policy.id}-prepopulation"


def sources(policy: Policy) -> dict[str, Question]:
    """Every question of the policy an EHR can answer, by name, in file order."""
    found: dict[str, Question] = {}
    for kind in ("initial", "renewal"):
        for criterion in walk(policy.request(kind).criteria):
            for question in criterion.questions:
                if question.ehr:
                    found.setdefault(question.name, question)
    return found


def asks_specialty(policy: Policy) -> bool:
    return any(s.kind == "specialty" for q in sources(policy).values() for s in q.ehr)


def _matches(codings: list[Coding], alias: str) -> str:
    return " or ".join(
        f"({alias}.system.value = {_string(c.system)} and {alias}.code.value = {_string(c.code)})"
        for c in codings
    )


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@functools.cache
def _templates() -> Environment:
    """One environment, so the template is compiled once per process (every
    policy's CQL is rendered when the catalog loads, to match translations)."""
    env = Environment(
        loader=PackageLoader("builder", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # CQL, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["matches"] = _matches
    env.filters["cql_string"] = _string
    return env


def _answer_code(policy: Policy, question: Question, source: EhrSource) -> dict[str, str]:
    """The coding of the option a record gives (the question's own options,
    and the investigational answers the policy adds to it)."""
    for kind, drug in policy.forms():
        index = index_policy(policy, kind, drug)
        info = index.questions.get(question.name)
        if info is not None:
            option = next(o for o in info.options if o.key == source.answer)
            return index.coding(option)
    raise PrepopulationError(f"{question.name}: not asked in any form")


def cql_text(policy: Policy, version: str) -> str:
    """The prepopulation Library of a policy, as CQL."""
    defines = [
        {
            "name": name,
            "question": question,
            "sources": [
                {"source": s, "code": _answer_code(policy, question, s) if s.answer else None}
                for s in question.ehr
            ],
        }
        for name, question in sources(policy).items()
    ]
    return (
        _templates()
        .get_template("prepopulation.cql.j2")
        .render(
            name=library_name(policy),
            version=version,
            title=policy.policy.title,
            prescriber=PRESCRIBER if asks_specialty(policy) else None,
            defines=defines,
        )
    )


def items_cql(policy: Policy, version: str) -> str:
    """A wrapper Library that names each question's expression as the
    Questionnaire writes it (``"{Library}"."{question}"``): translated only to
    give each initialExpression its ELM."""
    name = library_name(policy)
    lines = [
        f"library {name}Items version '{version}'",
        "",
        "using FHIR version '4.0.1'",
        "",
        f"include {name} version '{version}'",
        "",
        "context Patient",
        "",
    ]
    for question in sources(policy):
        lines += [f'define "{question}":', f'  {name}."{question}"', ""]
    return "\n".join(lines)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Compiled:
    """A policy's prepopulation Library and its translation."""

    name: str
    version: str
    cql: str
    elm: dict[str, Any]  # the Library's ELM
    expressions: dict[str, Any]  # question name → the ELM of its initialExpression

    def to_json(self) -> dict[str, Any]:
        return {
            "library": self.name,
            "version": self.version,
            "cqlSha256": digest(self.cql),
            "elm": self.elm,
            "expressions": self.expressions,
        }


def cache_path(folder: Path, policy: Policy, version: str) -> Path:
    return folder / CQL_FOLDER / f"{policy.id}-{version}.json"


def load(policy: Policy, version: str, folders: list[Path]) -> Compiled | None:
    """The policy's compiled Library from the first folder holding a
    translation of exactly today's CQL (None when none does)."""
    text = cql_text(policy, version)
    for folder in folders:
        path = cache_path(folder, policy, version)
        if not path.exists():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("cqlSha256") == digest(text):
            return Compiled(data["library"], version, text, data["elm"], data["expressions"])
    return None


def loaded(
    policies: list[Policy], folders: list[Path], version_of: Callable[[Policy], str]
) -> dict[str, Compiled]:
    """The translations kept in ``folders`` for the policies that need one
    (by policy id); a policy whose translation is missing or stale is left
    out — :func:`builder.artifacts.questionnaires` then refuses it."""
    found = {}
    for policy in policies:
        if sources(policy):
            compiled = load(policy, version_of(policy), folders)
            if compiled is not None:
                found[policy.id] = compiled
    return found


def cql_file(folder: Path, compiled: Compiled) -> Path:
    """The CQL as committed for review, beside its translation."""
    return folder / CQL_FOLDER / f"{compiled.name}-{compiled.version}.cql"


def translate(libraries: dict[str, str]) -> dict[str, Any]:
    """CQL → ELM with the pinned translator (``cql/translate.mjs``); an error
    names the library, line and column."""
    node = shutil.which("node")
    if node is None or not (TRANSLATE.parent / "node_modules").exists():
        raise PrepopulationError(
            "the CQL translator is not installed: run scripts/install-cql-tools (needs Node.js)"
        )
    done = subprocess.run(
        [node, str(TRANSLATE)],
        input=json.dumps({"libraries": libraries}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise PrepopulationError(f"the generated CQL does not translate: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def compile_policy(policy: Policy, version: str) -> Compiled:
    """Translate a policy's prepopulation Library (and the wrapper naming each
    question's expression)."""
    name = library_name(policy)
    text = cql_text(policy, version)
    elm = translate({name: text, f"{name}Items": items_cql(policy, version)})
    statements = elm[f"{name}Items"]["library"]["statements"]["def"]
    expressions = {s["name"]: s["expression"] for s in statements if s["name"] in sources(policy)}
    return Compiled(name, version, text, elm[name], expressions)


def save(folder: Path, policy: Policy, compiled: Compiled) -> Path:
    path = cache_path(folder, policy, compiled.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(compiled.to_json(), indent=1, sort_keys=True) + "\n", "utf-8")
    return path


def library_resource(policy: Policy, compiled: Compiled) -> dict[str, Any]:
    """The FHIR Library a DTR client runs: CQL and its ELM."""
    identity = policy.policy

    def data(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    return {
        "resourceType": "Library",
        "id": library_id(policy),
        "url": f"{identity.canonical_base}/Library/{library_id(policy)}",
        "version": compiled.version,
        "name": compiled.name,
        "title": f"{identity.title}: prepopulation from EHR data",
        "status": "active",
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        **({"date": identity.date_text} if identity.date_text else {}),
        "publisher": identity.payer.name,
        "description": (
            "Answers to the questions of this policy's Questionnaires that an EHR holds"
            " (CQL over FHIR 4.0.1, with its ELM), for a DTR client to prefill."
        ),
        "parameter": library_parameters(policy),
        "dataRequirement": data_requirements(policy),
        "content": [
            {"contentType": "text/cql", "data": data(compiled.cql)},
            {
                "contentType": "application/elm+json",
                "data": data(json.dumps(compiled.elm, sort_keys=True, separators=(",", ":"))),
            },
        ],
    }


# What each kind of EHR source retrieves, and the elements its CQL reads:
# (resource type, the element its codes filter, the elements read). A DTR
# client that fetches only what a Library declares (as the HL7 reference
# client does) fetches exactly these.
_RETRIEVES: dict[str, list[tuple[str, str | None, list[str]]]] = {
    "condition": [("Condition", "code", ["code", "verificationStatus"])],
    "observation": [("Observation", "code", ["code", "status", "value"])],
    "medication": [
        ("MedicationRequest", "medication", ["medication", "status"]),
        ("MedicationStatement", "medication", ["medication", "status"]),
    ],
}
# A question's answer type → the FHIR type of its CQL definition's result.
_RESULT_TYPES = {"date": "date", "boolean": "boolean", "choice": "Coding"}


def _coding(coding: Coding) -> dict[str, str]:
    return {
        "system": coding.system,
        "code": coding.code,
        **({"display": coding.display} if coding.display else {}),
    }


def data_requirements(policy: Policy) -> list[dict[str, Any]]:
    """One FHIR DataRequirement per retrieve of the prepopulation CQL (the
    Patient, then each source's records, with the codes it filters on and the
    elements it reads), in the order the CQL retrieves them."""
    reads_birth_date = any(s.kind == "birth_date" for q in sources(policy).values() for s in q.ehr)
    found: list[dict[str, Any]] = [
        {"type": "Patient", **({"mustSupport": ["birthDate"]} if reads_birth_date else {})}
    ]
    for question in sources(policy).values():
        for source in question.ehr:
            for kind, path, read in _RETRIEVES.get(source.kind, []):
                requirement: dict[str, Any] = {"type": kind, "mustSupport": read}
                if path is not None:
                    requirement["codeFilter"] = [
                        {"path": path, "code": [_coding(c) for c in source.codes]}
                    ]
                found.append(requirement)
    return found


def library_parameters(policy: Policy) -> list[dict[str, Any]]:
    """The Library's parameters: the prescriber's PractitionerRole it reads
    (the launch context ``user``), and each question's definition as an
    output, typed."""
    found: list[dict[str, Any]] = []
    if asks_specialty(policy):
        found.append(
            {
                "name": PRESCRIBER,
                "use": "in",
                "min": 0,
                "max": "1",
                "documentation": "The prescriber: the DTR launch context 'user'",
                "type": "PractitionerRole",
            }
        )
    for name, question in sources(policy).items():
        found.append(
            {
                "name": name,
                "use": "out",
                "min": 0,
                "max": "1",
                "documentation": question.text,
                "type": _RESULT_TYPES[question.type],
            }
        )
    return found


def questionnaire_extensions(policy: Policy, compiled: Compiled) -> list[dict[str, Any]]:
    """The Questionnaire's launch contexts and its reference to the Library."""
    contexts = [("patient", "Patient", "The member the request is for")]
    if asks_specialty(policy):
        contexts.append(
            ("user", "PractitionerRole", f"The prescriber (the CQL parameter {PRESCRIBER!r})")
        )
    extensions = [
        {
            "url": LAUNCH_CONTEXT,
            "extension": [
                {"url": "name", "valueCoding": {"system": LAUNCH_CONTEXT_SYSTEM, "code": code}},
                {"url": "type", "valueCode": kind},
                {"url": "description", "valueString": description},
            ],
        }
        for code, kind, description in contexts
    ]
    extensions.append({"url": CQF_LIBRARY, "valueCanonical": library_canonical(policy, compiled)})
    return extensions


def library_canonical(policy: Policy, compiled: Compiled) -> str:
    return f"{policy.policy.canonical_base}/Library/{library_id(policy)}|{compiled.version}"


def initial_expression(policy: Policy, compiled: Compiled, question: str) -> dict[str, Any]:
    """The question's definition by name (``text/cql-identifier``, the
    Library in ``reference``: DTR's SHOULD for a bare reference, and what
    clients that split ``Library.define`` or take a lone name resolve), with
    its ELM as the DTR ``alternativeExpression``."""
    return {
        "url": INITIAL_EXPRESSION,
        "valueExpression": {
            "language": "text/cql-identifier",
            "expression": question,
            "reference": library_canonical(policy, compiled),
            "extension": [
                {
                    "url": ALTERNATIVE_EXPRESSION,
                    "valueExpression": {
                        "language": "application/elm+json",
                        "expression": json.dumps(
                            compiled.expressions[question], sort_keys=True, separators=(",", ":")
                        ),
                    },
                }
            ],
        },
    }
