"""How the service recognises a member across requests.

A member is named by a FHIR Reference: the subject of a response, the
beneficiary of a Coverage. Two references name the same member when their
literal ``reference`` is the same (``Patient/p1``), or, without one, when
their business ``identifier`` (system and value) is. A reference with
neither names nobody we can match, and nothing is prefilled from history
for it.
"""

from __future__ import annotations

from typing import Any


def member_key(reference: Any) -> str | None:
    """The key a member's records are kept under, or None when the reference
    does not identify one."""
    if not isinstance(reference, dict):
        return None
    literal = reference.get("reference")
    if isinstance(literal, str) and literal.strip():
        return f"ref:{literal.strip()}"
    identifier = reference.get("identifier")
    if isinstance(identifier, dict):
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and value.strip():
            return f"id:{system}|{value.strip()}"
    return None
