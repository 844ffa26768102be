"""What a request says of itself beyond the answers: the member (name, id,
birth date), the prescriber (name, NPI) and how fast it must be decided.

A QuestionnaireResponse carries them where FHIR puts them: ``subject`` (a
Reference with the member's ``display`` name and ``identifier``),
``author`` (the prescriber: ``display`` and an NPI ``identifier``), and the
priority in an extension (``standard`` or ``expedited``; standard when
absent). The portal fills all of them from its patient and prescriber
fields; a DTR client sets what it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scoring.outcome import InvalidInput, Issue

# the extensions this project publishes: their canonical URLs are fixed, not
# configuration (a client sends them), named here once; the portal's script
# is given them by its page
PUBLISHED = "https://pa-dtr.example.org/fhir/StructureDefinition/"
PRIORITY_EXTENSION = PUBLISHED + "request-priority"
# the member's birth date on a draft the portal saves, for a form whose
# birth-date question is hidden or absent
BIRTH_DATE_EXTENSION = PUBLISHED + "portal-member-birth-date"
PRIORITIES = ("standard", "expedited")
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"


@dataclass(frozen=True)
class RequestFacts:
    member_name: str | None
    member_id: str | None
    prescriber_name: str | None
    prescriber_npi: str | None
    priority: str


def _reference(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def priority_of(response: Mapping[str, Any]) -> str:
    """The request's priority; a value other than the two is a 400."""
    for extension in response.get("extension", []) or []:
        if isinstance(extension, Mapping) and extension.get("url") == PRIORITY_EXTENSION:
            value = extension.get("valueCode")
            if value not in PRIORITIES:
                raise InvalidInput(
                    [
                        Issue(
                            "value",
                            f"the request priority must be standard or expedited, not {value!r}",
                            "QuestionnaireResponse.extension",
                        )
                    ],
                    400,
                )
            return str(value)
    return "standard"


def facts(response: Mapping[str, Any]) -> RequestFacts:
    subject, author = _reference(response.get("subject")), _reference(response.get("author"))
    member_id = _reference(subject.get("identifier")).get("value")
    if member_id is None and isinstance(subject.get("reference"), str):
        member_id = subject["reference"].rsplit("/", 1)[-1]
    npi = _reference(author.get("identifier"))
    return RequestFacts(
        member_name=subject.get("display"),
        member_id=member_id,
        prescriber_name=author.get("display"),
        prescriber_npi=npi.get("value") if npi.get("system") == NPI_SYSTEM else None,
        priority=priority_of(response),
    )


def npi_valid(npi: str) -> bool:
    """The NPI check digit (Luhn over the prefix 80840 and the first nine digits)."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return (10 - total % 10) % 10 == int(npi[9])
