"""Portal passwords, hashed with Argon2id (``argon2-cffi``, its default
parameters: RFC 9106's second recommended option). A password is never
stored or logged; a sign-in with an unknown name costs the same as one
with a wrong password, so the time taken does not tell which names exist.
"""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
MIN_LENGTH = 12


@cache
def _dummy() -> str:
    """Verified against when the name is unknown: same work, same answer
    (no). Made at the first such sign-in, not at import: a hash at full cost
    takes a tenth of a second, which every command would pay."""
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    return _HASHER.hash(password)


def verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def generated() -> str:
    """A password for a first user: 20 characters from a CSPRNG."""
    return secrets.token_urlsafe(15)
