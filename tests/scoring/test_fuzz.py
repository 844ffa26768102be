"""Property-based fuzzing of the public scoring path, ``score_json``.

Every case of the clinical case tables is filled into a valid response, then
mutated as JSON (``tests/scoring/fuzz_mutations.py``: values of the wrong JSON type,
deleted keys, duplicated items and answers, changed linkIds, items moved to
other groups, partial and impossible dates, items nested hundreds deep, a
Parameters wrapper) and sent as a dict, JSON text or bytes (truncated, not
UTF-8, replaced by deep nesting). Properties:

(a) the result is a Determination, or :class:`InvalidInput` with a 4xx status
    and an OperationOutcome — never any other exception;
(b) less information never gains an approval: dropping one answered item (or
    cutting a date answer to its year or month) from a response that is not
    approved does not approve it, and from an approved one gives approved or
    pended — never denied or investigational.

``score_json`` takes a bare QuestionnaireResponse; the Parameters wrapper is
unwrapped by the HTTP layer, so wrapped bodies are also posted to
``/QuestionnaireResponse/$evaluate`` (never a 500). The Parameters of the DTR
operations (``$questionnaire-package``, ``$log-questionnaire-errors``,
``ValueSet/$expand``) are mutated the same way and posted: 200 or a 4xx
OperationOutcome, never a 500.

Derandomized, without an example database: CI runs the same examples every
time. ``bench/fuzz_campaign.py`` runs the same mutations far longer.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from scoring import Determination
from service.app import create_app
from service.settings import Settings
from tests.scoring.fuzz_mutations import (
    BYTES_ENCODING,
    ENCODING,
    PLAN,
    Base,
    Failure,
    apply,
    check_less_information,
    coarsen_date,
    date_answers,
    deep_copy,
    drop_item,
    encode,
    load_bases,
    mutate,
    paths,
    resolve,
    score_checked,
    settle,
    wrap_parameters,
)
from tests.support.callers import authorize
from tests.support.cases import AS_OF, bundled_catalog
from tests.support.dtr_requests import FHIR, coverage, order

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@cache
def bases() -> list[Base]:
    """The valid responses the fuzzer starts from, filled when first drawn
    (not at import: collecting this module stays cheap)."""
    return load_bases(bundled_catalog())


def _scored(base: Base) -> Determination | None:
    result = score_checked(bundled_catalog(), base.doc, base.as_of)
    return result if isinstance(result, Determination) else None


@cache
def scored() -> list[tuple[Base, Determination]]:
    """The valid responses that score (a case that expects a refusal stays out of (b))."""
    return [(base, d) for base in bases() if (d := _scored(base)) is not None]


ANY_BASE = st.deferred(lambda: st.sampled_from(bases()))
SCORED_BASE = st.deferred(lambda: st.sampled_from([base for base, _full in scored()]))


def _path(path: tuple[Any, ...]) -> str:
    return "/".join(map(str, path))


def test_the_fuzzer_starts_from_responses_of_every_outcome() -> None:
    assert len(bases()) >= 100
    outcomes = {d.outcome for _base, d in scored()}
    assert outcomes == {"approved", "denied", "pended", "investigational"}


def _draw_mutated(data: st.DataObject, base: Base, most: int) -> Any:
    plans = data.draw(st.lists(PLAN, min_size=1, max_size=most), label="plans")
    doc, made = mutate(base, plans)
    for mutation in made:
        note(f"mutation: {mutation}")
    return doc


# --- (a) a determination or a 4xx refusal, never a crash ---------------------------


@settings(FUZZ, max_examples=2500)
@given(base=ANY_BASE, data=st.data())
def test_mutated_response_is_scored_or_refused(base: Base, data: st.DataObject) -> None:
    doc = _draw_mutated(data, base, most=3)
    encoding = settle(doc, data.draw(ENCODING, label="encoding"))
    note(f"encoding: {encoding}")
    score_checked(bundled_catalog(), encode(doc, encoding), base.as_of)


# --- (b) less information never gains an approval -------------------------------------


@settings(FUZZ, max_examples=800)
@given(base=SCORED_BASE, data=st.data())
def test_dropping_an_answer_from_a_mutated_response_never_gains_an_approval(
    base: Base, data: st.DataObject
) -> None:
    """From a response changed by mutations that still scores."""
    doc = _draw_mutated(data, base, most=2)
    full = score_checked(bundled_catalog(), doc, base.as_of)
    answered = paths(doc).answered if isinstance(doc, dict) else ()
    if not isinstance(full, Determination) or not answered:
        return
    path = data.draw(st.sampled_from(answered), label="dropped item")
    note(f"dropped {_path(path)} from a response {full.outcome}")
    reduced = score_checked(bundled_catalog(), drop_item(doc, path), base.as_of)
    check_less_information(full, reduced, f"dropping {_path(path)}")


def test_dropping_any_one_answer_never_gains_an_approval() -> None:
    """Every answered item of every valid response, dropped in turn."""
    failures, checked = [], 0
    for base, full in scored():
        for path in paths(base.doc).answered:
            checked += 1
            try:
                reduced = score_checked(bundled_catalog(), drop_item(base.doc, path), base.as_of)
                check_less_information(full, reduced, f"dropping {_path(path)}")
            except Failure as failure:
                failures.append(f"{base.name}: {failure}")
    assert checked > 1000
    assert not failures, "\n".join(failures)


def test_a_date_cut_to_its_year_or_month_never_gains_an_approval() -> None:
    """A date known only to the year or month says less than the full date."""
    failures, checked = [], 0
    for base, full in scored():
        for path in date_answers(base.doc):
            for keep in (4, 7):
                checked += 1
                try:
                    reduced = score_checked(
                        bundled_catalog(), coarsen_date(base.doc, path, keep), base.as_of
                    )
                    check_less_information(full, reduced, f"cutting {_path(path)} to {keep} chars")
                except Failure as failure:
                    failures.append(f"{base.name}: {failure}")
    assert checked > 100
    assert not failures, "\n".join(failures)


# --- the Parameters wrapper, over HTTP --------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    database = tmp_path_factory.mktemp("fuzz") / "store.sqlite3"
    # the scorer's own outcomes: no pharmacist review
    app = create_app(
        Settings(database=str(database)), catalog=bundled_catalog(), clock=lambda: AS_OF, payers={}
    )
    return authorize(TestClient(app, raise_server_exceptions=False))


def _fhir_reply(reply: Any) -> dict[str, Any]:
    """2xx with a ClaimResponse, or 4xx with an OperationOutcome; never a 500."""
    assert reply.status_code in (200, 201) or 400 <= reply.status_code < 500, reply.text
    body: dict[str, Any] = json.loads(reply.content)
    wanted = "ClaimResponse" if reply.status_code < 300 else "OperationOutcome"
    assert body.get("resourceType") == wanted, reply.text
    return body


def test_a_wrapped_response_is_scored_like_the_bare_one(client: TestClient) -> None:
    for base, full in scored()[:: max(1, len(scored()) // 12)]:
        if base.as_of != AS_OF:
            continue
        body = json.dumps(wrap_parameters(base.doc))
        reply = client.post("/QuestionnaireResponse/$evaluate", content=body, headers=FHIR)
        _fhir_reply(reply)
        record = reply.headers["location"].rsplit("/", 1)[1]
        assert client.get(f"/determinations/{record}").json()["outcome"] == full.outcome


@settings(FUZZ, max_examples=300)
@given(base=ANY_BASE, data=st.data())
def test_mutated_wrapped_response_over_http(
    client: TestClient, base: Base, data: st.DataObject
) -> None:
    """Mutated responses in a Parameters wrapper (itself mutated or not), as bytes."""
    doc = wrap_parameters(_draw_mutated(data, base, most=2))
    if data.draw(st.booleans(), label="mutate the wrapper"):
        mutation = resolve(data.draw(PLAN, label="wrapper plan"), base, doc)
        note(f"wrapper mutation: {mutation}")
        doc = apply(doc, mutation) if mutation else doc
    encoding = data.draw(BYTES_ENCODING, label="encoding")
    note(f"encoding: {encoding}")
    body = encode(doc, encoding)
    assert isinstance(body, bytes)
    reply = client.post("/QuestionnaireResponse/$evaluate", content=body, headers=FHIR)
    _fhir_reply(reply)


# --- the DTR operations' Parameters, over HTTP -------------------------------------------

OPERATION_BODIES = [
    (
        "/Questionnaire/$questionnaire-package",
        {
            "resourceType": "Parameters",
            "parameter": [
                coverage("Patient/example"),
                order(
                    [{"system": "http://hl7.org/fhir/sid/ndc", "code": "0078-0668-15"}],
                    "Mekinist 2 mg",
                    "Patient/example",
                ),
                {
                    "name": "questionnaire",
                    "valueCanonical": "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-renewal",
                },
                {"name": "context", "valueString": "no-such-request"},
                {"name": "changedsince", "valueInstant": "2026-01-01T00:00:00Z"},
            ],
        },
    ),
    (
        "/Questionnaire/$log-questionnaire-errors",
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "questionnaire",
                    "valueCanonical": "https://pa-dtr.example.org/fhir/Questionnaire/eocco329-initial|1.2.0-r3",
                },
                {
                    "name": "operationOutcome",
                    "resource": {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "processing"}],
                    },
                },
            ],
        },
    ),
    (
        "/ValueSet/$expand",
        {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "url",
                    "valueUri": "https://pa-dtr.example.org/fhir/ValueSet/eocco329-diagnosis|1.2.0-r3",
                }
            ],
        },
    ),
]


def test_the_operation_bodies_are_accepted(client: TestClient) -> None:
    for path, body in OPERATION_BODIES:
        reply = client.post(path, content=json.dumps(body), headers=FHIR)
        assert reply.status_code == 200, reply.text


@settings(FUZZ, max_examples=400)
@given(operation=st.sampled_from(OPERATION_BODIES), data=st.data())
def test_mutated_operation_parameters_over_http(
    client: TestClient, operation: tuple[str, dict[str, Any]], data: st.DataObject
) -> None:
    """$questionnaire-package, $log-questionnaire-errors and $expand bodies,
    mutated like responses: a 200 answer or a 4xx OperationOutcome, never a 500."""
    path, original = operation
    doc: Any = deep_copy(original)
    plans = data.draw(st.lists(PLAN, min_size=1, max_size=3), label="plans")
    for plan in plans:
        mutation = resolve(plan, bases()[0], doc)
        note(f"mutation: {mutation}")
        doc = apply(doc, mutation) if mutation else doc
    body = encode(doc, data.draw(BYTES_ENCODING, label="encoding"))
    reply = client.post(path, content=body, headers=FHIR)  # type: ignore[arg-type]
    assert reply.status_code == 200 or 400 <= reply.status_code < 500, reply.text
    kind = json.loads(reply.content).get("resourceType")
    assert kind in (
        {"Parameters", "OperationOutcome", "ValueSet"}
        if reply.status_code == 200
        else {"OperationOutcome"}
    ), reply.text
