"""The short reference number an office or a member reads out on the phone.

A record's id is 32 hex digits: exact, but no one can say it or type it
back. Each record also has a reference of ten characters from Crockford's
base-32 alphabet (digits and capitals without I, L, O, U, so none reads as
another): nine derived from the record's id (hashed), then one check character by the
Luhn mod N algorithm over that alphabet (``stdnum.luhn``), which catches
every single mistyped character and most swaps of two neighbours. Shown in
groups of five (``7K3M9-Q2XA7``); typed back in any case, with or without
the hyphen and spaces, and with Crockford's readings of the look-alikes
(O as 0, I and L as 1).

Nine characters are 45 bits: the store keeps references unique and, on the
rare record whose derived reference is taken, derives the next candidate
(:func:`candidates`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from stdnum import luhn

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10  # nine characters and the check character
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None, " ": None})


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def with_check(body: str) -> str:
    """``body`` (nine characters of the alphabet) and its check character."""
    return body + luhn.calc_check_digit(body, ALPHABET)


def candidates(record_id: str) -> Iterator[str]:
    """The references a record may take, in order, each from a hash of the
    record's id and the candidate's place (the same id, the same references:
    a backfill and a new record derive alike)."""
    attempt = 0
    while True:
        digest = hashlib.sha256(f"{record_id}/{attempt}".encode()).digest()
        yield with_check(_encode(int.from_bytes(digest[:6]) >> 3, LENGTH - 1))
        attempt += 1


def normalize(text: str) -> str | None:
    """The reference a typed text spells, or None when it is not one
    (wrong length, a character outside the alphabet, or a check character
    that does not match: a typo)."""
    plain = text.strip().upper().translate(_READ_AS)
    if len(plain) != LENGTH or any(c not in ALPHABET for c in plain):
        return None
    return plain if luhn.is_valid(plain, ALPHABET) else None


def shown(reference: str) -> str:
    """A reference as printed: two groups of five."""
    return f"{reference[:5]}-{reference[5:]}"
