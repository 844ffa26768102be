"""The structure check (``scoring/structure.py``) accepts nothing the
``fhir.resources`` model refuses: every structure check the scorer makes —
on every case-table response, every worked example of every bundled policy,
the bundled example responses, the fuzz corpus of
``tests/scoring/fuzz_mutations.py`` and a corpus of responses mutated
element by element (wrong JSON types, unknown elements, malformed
primitives, required elements dropped, a list for one value and one value
for a list, two types of one choice) — is made again by building the
``fhir.resources`` R4B QuestionnaireResponse after the shape checks, as the
scorer did before. Where the model refuses, the walk must refuse too.

Where the walk refuses what the model takes, the refusal must be of a class
listed in ``STRICTER``: coercions the model makes (``"valueBoolean": 0``)
and formats it does not check. A walk that accepts an element the model
does not have is caught (``test_a_table_that_takes_an_unknown_element_is_caught``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import scoring.response
from policies.loader import bundled_policy_files, load_examples, load_policy
from qpackage.catalog import score_json
from qpackage.examples import run_examples
from scoring import InvalidInput
from scoring.fill import fill
from scoring.outcome import Issue
from scoring.structure import PRIMITIVES, TYPES, shape_problems, structure_problems
from scoring.structure_table import TABLE_PATH, derive
from tests.scoring.fuzz_mutations import (
    PLAN,
    Base,
    deep_copy,
    get,
    load_bases,
    mutate,
    paths,
    to_text,
    walk,
)
from tests.support.cases import (
    AS_OF,
    bundled_catalog,
    package_for,
    score_every_case_and_example,
)

# Refusals of the walk the model does not make, by what the walk says.
STRICTER: dict[str, re.Pattern[str]] = {
    # the model coerces: 0 / "true" to a boolean, "5" / 5.0 to an integer,
    # "1.5" to a decimal, a number to a timestamp
    "a JSON type the model coerces": re.compile(
        r"must be (true or false|a JSON integer|a JSON number|a JSON string|base64 text)"
    ),
    # the model's uri and canonical take any string (its pattern \S* is
    # searched, so it matches anywhere); its url any string it can read
    "a uri, canonical or url with spaces, or empty": re.compile(r"is not a (uri|canonical|url)"),
    # the model's base64 decoder skips characters outside the alphabet
    "base64 with characters outside its alphabet": re.compile(r"is not base64|data URL"),
    # FHIR's id is at most 64 characters; the model allows 255
    "an id longer than 64": re.compile(r"is not an id"),
    # FHIR ext-1: a value or nested extensions, never both, never neither
    "an extension with both or neither value and extensions": re.compile(
        r"an extension has either"
    ),
    # the model takes a field's Python name as well as its JSON name
    # (``valueBoolean__ext``, ``fhir_comments``), and ``resourceType`` in any
    # element (compared with the element's class name)
    "a key that is the model's, not FHIR JSON's": re.compile(r"has no element '"),
    # FHIR's required list of one or more, given empty
    "a required list given empty": re.compile(r" is required"),
    # a primitive's extension that carries only ``fhir_comments``
    "a primitive's extension with only comments": re.compile(r"needs an id or extensions"),
}

Seen = Counter[str]


def model_refuses(resource: Any) -> bool:
    """What the scorer refused before this walk: the shape checks (depth,
    nulls, Unicode, objects and lists where they belong), then the
    ``fhir.resources`` model."""
    if shape_problems(resource):
        return True
    try:
        QuestionnaireResponse.model_validate(resource)
    except (ValidationError, RecursionError, AttributeError, TypeError, ValueError, UnicodeError):
        return True
    return False


def stricter_class(issues: list[Issue]) -> str | None:
    """The listed class every issue of a refusal the model does not make
    falls in (the first issue's); None when one is unlisted."""
    found = None
    for issue in issues:
        names = [name for name, said in STRICTER.items() if said.search(issue.diagnostics)]
        if not names:
            return None
        found = found or names[0]
    return found


def compare(resource: Any, seen: Seen) -> list[Issue]:
    """The walk's issues for ``resource``, after checking them against the
    shape checks and the model."""
    issues = structure_problems(resource)
    refused = model_refuses(resource)
    if refused and not issues:
        raise AssertionError(
            "the structure check accepts what fhir.resources refuses:\n"
            + json.dumps(resource)[:2000]
        )
    if issues and not refused:
        kind = stricter_class(issues)
        assert kind is not None, (
            "refused, though fhir.resources takes it, for a reason not listed in STRICTER: "
            + " | ".join(i.diagnostics for i in issues)
        )
        seen[kind] += 1
    seen["refused by both" if refused else "accepted by both" if not issues else "stricter"] += 1
    return issues


@pytest.fixture()
def compared(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Every structure check the scorer makes, compared with the model."""
    seen: Seen = Counter()
    monkeypatch.setattr(scoring.response, "structure_problems", lambda r: compare(r, seen))
    yield seen


def test_the_table_is_the_models(tmp_path: Any) -> None:
    """The committed table is what the installed fhir.resources gives
    (regenerate: ``python -m scoring.structure_table``)."""
    committed = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(derive())), "run python -m scoring.structure_table"


def test_every_case_and_example(compared: Seen) -> None:
    score_every_case_and_example()
    for path in bundled_policy_files():
        found = load_examples(path)
        if found is not None:
            run_examples(load_policy(path), found[1], str(found[0]))
    # valid responses: none refused, by either
    assert compared["accepted by both"] > 100
    assert set(compared) == {"accepted by both"}, compared


FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


_BASES: list[Base] = []


def bases() -> list[Base]:
    if not _BASES:
        _BASES.extend(load_bases(bundled_catalog()))
    return _BASES


def as_json(doc: Any) -> Any:
    """``doc`` as the scorer receives it: through JSON text (a value no JSON
    reader takes leaves it None)."""
    try:
        return json.loads(to_text(doc))
    except (ValueError, RecursionError):
        return None


def check(doc: Any, seen: Seen) -> None:
    if isinstance(doc, dict) and doc.get("resourceType") == "QuestionnaireResponse":
        compare(doc, seen)


@FUZZ
@given(st.data())
def test_the_fuzz_corpus(data: st.DataObject) -> None:
    seen: Seen = Counter()
    base = data.draw(st.sampled_from(bases()))
    plans = data.draw(st.lists(PLAN, min_size=1, max_size=3))
    doc, _made = mutate(base, plans)
    check(as_json(doc), seen)


# --- mutations element by element ------------------------------------------------------

# every element name the table knows, and some it does not
NAMES = sorted(
    {name for spec in TYPES.values() for name in spec.elements}
    | {"valueBoolean__ext", "fhir_comments", "resourceType", "valueFoo", "Value", "link_id", ""}
)
TEXTS = (
    "", " ", "x", "a b", "a  b", " a", "a\n", "\t", "\x0c", "\u00a0", "é", "x" * 65, "x" * 256,
    "http://x", "http://x y", "https://pa-dtr.example.org/fhir/Questionnaire/q|1.0.0",
    "urn:oid:1.2.3", "urn:oid:3.1", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
    "Binary/1", "/Binary/1", "http://", "http://999.1.1.1", "http://x:99999", "#", "a:b",
    "2008", "2008-11", "2008-11-24", "2008-02-30", "2008-13", "0000", "2008-11-24T10:00:00Z",
    "2008-11-24T10:00:00", "2008-11-24T24:00:00Z", "2008-11-24T23:59:60+14:00",
    "2008-11-24T10:00:00.1234567-05:00", "2008-11-24T10:00Z", "10:00:00", "24:00:00", "10:00",
    "SGVsbG8=", "SGVs bG8=", "SGVsbG8", "SGVsbG8=x", "data:text/plain;base64,SGVsbG8=",
    "AAAA====", "true", "false", "0", "1.5", "-0", "1e3", "01", "+1", "completed", "in-progress",
)  # fmt: skip
# what a lax reader turns into a boolean, a number or a date
LAX = (0, 1, 0.0, 5.0, "true", "false", "0", "5", "1.5", "-0", 1700000000, "a b", "")
SCALARS = st.one_of(
    st.sampled_from(TEXTS),
    st.booleans(),
    st.sampled_from((0, 1, -1, 2**31, -(2**31) - 1, 2**31 - 1, 1.5, 1.0, -0.0, 1e300, 5e-324)),
    st.text(max_size=6),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
VALUE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(NAMES), inner, max_size=3),
        st.fixed_dictionaries({"url": st.sampled_from(TEXTS)}, optional={"valueString": inner}),
    ),
    max_leaves=5,
)


@st.composite
def element_mutation(draw: st.DrawFn) -> Any:
    base = draw(st.sampled_from(bases()))
    doc = deep_copy(base.doc)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(
            st.sampled_from(("retype", "lax", "set", "delete", "listed", "unlisted", "choice"))
        )
        where = paths(doc)
        # a lax value is given to an answer's value[x] (or the response's status)
        places = (where.answers or ((),)) if kind == "lax" else where.objects
        path = draw(st.sampled_from(places))
        node = doc
        for part in path:
            node = node[part]
        keys = sorted(node)
        if kind == "retype" and keys:  # an element it has, given another value
            node[draw(st.sampled_from(keys))] = draw(VALUE)
        elif kind == "lax" and keys:  # a value the model would coerce
            node[draw(st.sampled_from(keys))] = draw(st.sampled_from(LAX))
        elif kind == "set" or not keys:
            node[draw(st.sampled_from(NAMES))] = draw(VALUE)
        elif kind == "delete":
            del node[draw(st.sampled_from(keys))]
        elif kind == "listed":  # one value where it may be a list, or a list where one belongs
            key = draw(st.sampled_from(keys))
            node[key] = [node[key]]
        elif kind == "unlisted":
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], list) and node[key]:
                node[key] = node[key][0]
        else:  # a second type of the choice
            name = draw(st.sampled_from([n for n in NAMES if n.startswith("value")]))
            node[name] = draw(VALUE)
    return as_json(doc)


@FUZZ
@given(element_mutation())
def test_responses_mutated_element_by_element(doc: Any) -> None:
    check(doc, Counter())


def test_the_element_mutations_reach_both_sides() -> None:
    """The mutated corpus is not all refused by both, nor all accepted:
    some are refused only by the walk (a listed class), most by both."""
    seen: Seen = Counter()

    @settings(FUZZ, max_examples=300)
    @given(element_mutation())
    def run(doc: Any) -> None:
        check(doc, seen)

    run()
    assert seen["refused by both"] > 50, seen
    assert seen["stricter"] > 5, seen
    assert seen["accepted by both"] > 5, seen


# a valid value of each primitive type, to give any element its own type
SAMPLES: dict[str, Any] = {
    "boolean": True, "integer": 1, "unsignedInt": 1, "positiveInt": 1, "integer64": 1,
    "decimal": 1.5, "string": "x", "markdown": "x", "xhtml": "<div>x</div>", "code": "x",
    "id": "x", "uri": "http://x", "url": "http://x", "canonical": "http://x",
    "oid": "urn:oid:1.2", "uuid": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
    "base64Binary": "SGVsbG8=", "date": "2008-11-24", "dateTime": "2008-11-24",
    "instant": "2008-11-24T10:00:00Z", "time": "10:00:00", "_": {"id": "x"},
}  # fmt: skip


def sample(of: str, is_list: bool) -> Any:
    one = SAMPLES.get(of, {})
    return [one] if is_list else one


def test_every_element_name_on_every_kind_of_object() -> None:
    """Every element name of the table, with a value of its own type, put on
    one object of each kind a response holds (the response, groups,
    questions, answers of each type, their codings, attachments,
    quantities, references): wherever the model refuses the name, the walk
    does too."""
    seen: Seen = Counter()
    kinds: dict[tuple[str, ...], tuple[dict[str, Any], tuple[Any, ...]]] = {}
    for base in bases():
        for path, node in walk(base.doc):
            if isinstance(node, dict):
                shape = (*[p for p in path if isinstance(p, str)][-2:], *sorted(node))
                kinds.setdefault(shape, (base.doc, path))
    names = {
        name: spec
        for row in TYPES.values()
        for name, spec in row.elements.items()
        if spec[0] != "Resource"
    }
    assert len(kinds) > 10
    for doc, path in kinds.values():
        for name, (of, is_list, _required, _group) in sorted(names.items()):
            changed = deep_copy(doc)
            node = changed
            for part in path:
                node = node[part]
            if name in node:
                continue
            node[name] = sample(of, is_list)
            compare(changed, seen)
    assert seen["refused by both"] > 1000, seen
    assert seen["accepted by both"] > 50, seen


def test_every_primitive_of_every_kind_of_object_with_each_tricky_value() -> None:
    """Each primitive a response holds (a status, a linkId, a date answer, a
    coding's code, an attachment's data …), once on each kind of object,
    given each value of ``TEXTS`` and ``LAX``: wherever the model refuses
    it, the walk does too."""
    seen: Seen = Counter()
    places: dict[tuple[str, ...], tuple[dict[str, Any], tuple[Any, ...]]] = {}
    for base in bases():
        for path, node in walk(base.doc):
            if path == ("resourceType",):
                continue  # refused before the walk (check_structure)
            if path and isinstance(path[-1], str) and not isinstance(node, dict | list):
                parent = get(base.doc, path[:-1])
                shape = (*[p for p in path if isinstance(p, str)][-3:], *sorted(parent))
                places.setdefault(shape, (base.doc, path))
    assert len(places) > 15
    for doc, path in places.values():
        for value in (*TEXTS, *LAX):
            changed = deep_copy(doc)
            get(changed, path[:-1])[path[-1]] = value
            compare(changed, seen)
    assert seen["refused by both"] > 300, seen
    assert seen["stricter"] > 50, seen


def test_a_table_that_takes_an_unknown_element_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: a table that lets an answer carry an element
    R4 does not have (``valueFoo``) accepts what the model refuses."""
    answer = TYPES["QuestionnaireResponseItemAnswer"]
    monkeypatch.setitem(answer.walked, "valueFoo", ("string", False, PRIMITIVES["string"], None))
    package = package_for(bundled_catalog(), "eocco329", "initial")
    response = fill(package, {"birth_date": "2008-11-24"})
    first = next(node for path, node in walk(response) if path[-2:-1] == ("answer",))
    first["valueFoo"] = "x"
    assert not structure_problems(response)
    with pytest.raises(AssertionError, match=r"accepts what fhir\.resources refuses"):
        compare(response, Counter())


def test_what_the_model_coerces_is_refused() -> None:
    """The stricter classes are real: each example is taken by the model and
    refused by the walk, naming the path."""
    package = package_for(bundled_catalog(), "eocco329", "initial")
    for value, said in (
        (0, "must be true or false, not 0"),
        ("true", "must be true or false, not 'true'"),
    ):
        response = fill(package, {"combination_therapy": True})
        stack = list(response["item"])
        while stack:
            item = stack.pop()
            if item["linkId"] == "I.C.combination_therapy":
                item["answer"][0]["valueBoolean"] = value
            stack.extend(item.get("item", []))
        assert not model_refuses(response)
        (issue,) = structure_problems(response)
        assert said in issue.diagnostics and "item I.C.combination_therapy" in issue.diagnostics
        assert issue.expression is not None and issue.expression.endswith("valueBoolean")
        with pytest.raises(InvalidInput):
            score_json(bundled_catalog(), response, AS_OF)
