"""JSON text of what the service stores and replies, written by ``orjson``.

``orjson`` (Rust) writes a response's JSON several times faster than the
standard library: the record's JSON columns, the response key's canonical
text and every reply were about 0.3 ms of a determination's 2.3 ms of CPU.
What it writes reads back as the same value. Where it cannot write a value
(an integer beyond 64 bits) the standard library does, as before.

The response key hashes canonical JSON, so its bytes must stay what they
were when the stored keys were made (``json.dumps`` with sorted keys, no
spaces, no ASCII escaping): a resent response must find its record. The two
libraries spell every string, integer and key order alike but not every
float — ``1e-05`` against ``0.00001``, ``2.5e-07`` against ``2.5e-7`` — nor
NaN (null against NaN): a text in which orjson wrote a float in exponent
form, one below 0.0001 or a null is written by the standard library
instead (``tests/service/test_jsontext.py`` checks the rule on random
floats and fuzzed responses).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_DIGITS = frozenset(b"0123456789")


def _spelled_otherwise(text: bytes) -> bool:
    """Whether orjson's ``text`` may hold a value json.dumps spells otherwise:
    a number with an exponent (orjson always signs it: ``e-``, ``e+``), a
    fraction below 0.0001 (json.dumps writes those in exponent form), or null,
    which orjson also writes for NaN and the infinities (json.dumps: NaN,
    Infinity). FHIR JSON has no nulls in a response. A string that merely
    looks so ("v1e-2", "0.0000") sends the text the slower way, nothing
    worse. Substring searches, not a regular expression: about 15 µs for a
    5 KB response against 30-80 µs."""
    if b"null" in text or b"0.0000" in text:
        return True
    for mark in (b"e-", b"e+"):
        at = text.find(mark)
        while at > 0:
            if text[at - 1] in _DIGITS:
                return True
            at = text.find(mark, at + 2)
    return False


def dump(value: Any) -> bytes:
    """Compact JSON, UTF-8. NaN and the infinities, which JSON cannot spell,
    come out as null: the checks refuse them in a response, and nothing the
    service makes has one."""
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def dump_text(value: Any) -> str:
    return dump(value).decode()


def canonical(value: Any) -> bytes:
    """The bytes of ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` encoded as UTF-8, faster where orjson writes them alike."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        text = None
    if text is None or _spelled_otherwise(text):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return text
