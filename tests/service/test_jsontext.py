"""``service.jsontext``: what the service stores and replies reads back as
the value written, and the response key's canonical text is, byte for byte,
what ``json.dumps`` wrote when the stored keys were made — on random JSON
values (every kind of float, any text, integers beyond 64 bits) and on the
fuzz corpus of responses. A rule that let orjson write every float is
caught (``test_orjson_alone_would_change_keys``)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.jsontext import canonical, dump
from service.store import response_key
from tests.scoring.fuzz_mutations import PLAN, mutate
from tests.scoring.test_structure_diff import as_json, bases

FLOATS = st.floats() | st.sampled_from(
    [1e-05, 0.0001, 9.9e-05, 1e15, 1e16, 1.5e17, -0.0, 5e-324, 1.7976931348623157e308]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | FLOATS
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
EXAMPLES = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def json_canonical(value: Any) -> bytes:
    """How the response key's text was written before orjson."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def finite(value: Any) -> bool:
    """Whether ``value`` has no NaN or infinity (JSON has no spelling for them)."""
    text = json.dumps(value)
    return "NaN" not in text and "Infinity" not in text


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values: -0.0 equals 0.0, as JSON has one zero."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) or a == b


@EXAMPLES
@given(VALUES)
def test_the_canonical_text_is_the_one_keys_were_made_of(value: Any) -> None:
    assert canonical(value) == json_canonical(value)


@EXAMPLES
@given(VALUES.filter(finite))
def test_what_is_written_reads_back_as_written(value: Any) -> None:
    read = json.loads(dump(value))
    assert same(read, value) or (isinstance(value, float) and math.isclose(read, value))


@settings(EXAMPLES, max_examples=150)
@given(st.data())
def test_the_key_of_a_fuzzed_response_is_unchanged(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(bases()))
    doc = as_json(mutate(base, data.draw(st.lists(PLAN, min_size=1, max_size=3)))[0])
    if doc is None:
        return
    owner = data.draw(st.sampled_from([None, "client/bench", "organization/clinic-a"]))
    try:
        before = hashlib.sha256(f"{owner}\n".encode() + json_canonical(doc)).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate: refused as it was (the checks refuse it first)
        with pytest.raises(UnicodeEncodeError):
            response_key(doc, owner)
        return
    assert response_key(doc, owner) == before
    if finite(doc):
        assert json.loads(dump(doc)) == doc


def test_orjson_alone_would_change_keys() -> None:
    """The float rule is needed: orjson spells these otherwise, and the
    canonical text still matches json's."""
    import orjson

    for value in ({"valueDecimal": 1e-05}, {"valueDecimal": 2.5e-07}, [-3.5e-08], [math.nan]):
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != json_canonical(value)
        assert canonical(value) == json_canonical(value)
