"""SMART v2 scopes (``system/QuestionnaireResponse.cru``): parsing, granting
and checking.

A backend client holds ``system/`` scopes (its token says which were
granted); a signed-in person holds ``user/`` scopes by role (``ROLES``).
Each route of the service names the resource type and the one interaction
it needs (``c`` create, ``r`` read, ``u`` update, ``d`` delete, ``s``
search); a scope permits it when it names that type (or ``*``) and letter.
SMART v1 spellings (``.read``, ``.write``, ``.*``) are read as their v2
equivalents, so an older client still gets what it asks for.

The payer's own work — the review queue and its decisions, the PA metrics,
the error reports clients send — is a person's, signed in with a payer role
(``PAYER_ROLES``): scopes alone never open it, since a backend client's
registration says what the payer let it ask for, not who is behind it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(system|user|patient)/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)$")

# what a signed-in person may do, by role: an office submits and reads its
# organization's requests; a payer pharmacist reads every request, works the
# review queue and reads the error reports clients send
ROLES: dict[str, tuple[str, ...]] = {
    "office": (
        "user/Questionnaire.rs",
        "user/QuestionnaireResponse.crud",
        "user/ClaimResponse.r",
        "user/ValueSet.rs",
        "user/Library.r",
        "user/OperationDefinition.r",
    ),
    "pharmacist": (
        "user/Questionnaire.rs",
        "user/QuestionnaireResponse.r",
        # the review queue (search) and a decision (update)
        "user/ClaimResponse.rus",
        "user/ValueSet.rs",
        "user/Library.r",
        "user/OperationOutcome.rs",
        "user/OperationDefinition.r",
        "user/MeasureReport.r",  # the plan's PA metrics (/metrics)
    ),
}
# the roles of the payer's own staff: who works the review queue, reads the PA
# metrics and the error reports (each still needs its role's scope for the
# interaction); a system is never one of them, whatever its token's scopes
PAYER_ROLES = frozenset({"pharmacist"})
# what a DTR client is registered for unless the payer says otherwise
DTR_CLIENT_SCOPES = (
    "system/Questionnaire.rs",
    "system/QuestionnaireResponse.cr",
    "system/ClaimResponse.r",
    "system/ValueSet.rs",
    "system/Library.r",
    "system/OperationDefinition.r",
)


@dataclass(frozen=True)
class Scope:
    context: str  # system, user or patient
    resource: str  # a resource type or *
    letters: str  # a subsequence of "cruds"

    def __str__(self) -> str:
        return f"{self.context}/{self.resource}.{self.letters}"

    def permits(self, context: str, resource: str, letter: str) -> bool:
        return (
            self.context == context and self.resource in ("*", resource) and letter in self.letters
        )


def parse(text: str) -> Scope | None:
    """A resource scope, or None for anything else (``openid``, a typo)."""
    match = _SCOPE.match(text)
    if match is None:
        return None
    context, resource, letters = match.groups()
    letters = _V1.get(letters, letters)
    return Scope(context, resource, letters) if letters else None


def is_wildcard(text: str) -> bool:
    """Whether a scope names every resource type (``system/*.rs``) or every
    interaction (``system/Questionnaire.*``): more than any client of this
    service needs, and whatever the service adds later besides."""
    match = _SCOPE.match(text)
    return match is not None and "*" in (match[2], match[3])


def parse_all(text: str) -> list[Scope]:
    return [s for s in (parse(part) for part in text.split()) if s is not None]


def grant(requested: str, allowed: Iterable[str]) -> list[str]:
    """The scopes to grant: each requested scope narrowed to what the client
    is registered for (SMART: the server may grant less than asked)."""
    registered = [s for s in (parse(a) for a in allowed) if s is not None]
    granted: list[str] = []
    for wanted in parse_all(requested):
        for held in registered:
            if held.context != wanted.context:
                continue
            if held.resource not in ("*", wanted.resource):
                continue
            letters = "".join(c for c in LETTERS if c in wanted.letters and c in held.letters)
            scope = str(Scope(wanted.context, wanted.resource, letters)) if letters else ""
            if scope and scope not in granted:
                granted.append(scope)
    return granted


def permits(scopes: Iterable[Scope], context: str, resource: str, letter: str) -> bool:
    return any(s.permits(context, resource, letter) for s in scopes)
