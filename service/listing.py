"""Search, filters and paging of the lists people work from: the
pharmacist's queue and decided cases, and an office's history.

The query parameters are the same on every list (API and page):
``patient`` (any part of the name), ``member`` (the member id, whole),
``drug`` (any part of the drug's name, a brand or generic name, the policy
id or the form's title), ``status`` (approved, denied, investigational,
pended, in-review), ``from`` and ``to`` (days received, UTC, both
included), ``reference`` (the short reference number, typed as printed or
not: a typo is refused by its check character), ``limit`` (1 to 100, 25 by
default) and ``offset``. A value that is none of these is a 400 naming the
parameter.

Paging is by limit and offset with the total matching, not by keyset: the
reader of a filtered list wants to know how many there are and to go to
any page, and the lists are an office's or a queue's, not a table scan. The
order is total (the record id breaks ties), so reading the same page twice
gives the same records; a record arriving or leaving between two pages
shifts the later pages by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

from qpackage.catalog import Catalog
from review.reference import normalize
from scoring.outcome import InvalidInput, Issue
from service.casework import STATUSES, Search
from service.migrations import searched

MAX_LIMIT = 100
PARAMETERS = ("patient", "member", "drug", "status", "from", "to", "reference")


def _refused(parameter: str, message: str) -> InvalidInput:
    return InvalidInput([Issue("value", f"{parameter}: {message}", parameter)], 400)


def _day(parameter: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _refused(parameter, f"a day as YYYY-MM-DD, not {text!r}") from None


def _whole(parameter: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise _refused(parameter, f"a whole number from {low} to {high}, not {text!r}")
    return int(text)


def forms_of(catalog: Catalog, drug: str) -> tuple[str, ...]:
    """The forms (url|version) of every drug whose name, brand or generic
    name, policy id or form title holds ``drug``."""
    wanted = searched(drug) or ""
    found = []
    for canonical, package in catalog.packages.items():
        named = package.policy.drug(package.drug)
        texts = (named.name, *named.names, package.policy.id,
                 str(package.questionnaire.get("title", "")))  # fmt: skip
        if any(wanted in (searched(t) or "") for t in texts):
            found.append(canonical)
    return tuple(sorted(found))


def search_of(params: Mapping[str, str], catalog: Catalog) -> Search:
    """The search the query parameters ask for; a 400 naming the parameter
    for a value that is not one."""
    given = {k: v.strip() for k, v in params.items() if k in (*PARAMETERS, "limit", "offset")}
    given = {k: v for k, v in given.items() if v}
    status = given.get("status")
    if status is not None and status not in STATUSES:
        raise _refused("status", f"one of {', '.join(STATUSES)}, not {status!r}")
    reference = None
    if "reference" in given:
        reference = normalize(given["reference"])
        if reference is None:
            raise _refused(
                "reference",
                f"{given['reference']!r} is not a reference number: ten letters and digits whose"
                " last is a check character; check it for a mistyped character",
            )
    received_from = _day("from", given["from"]) if "from" in given else None
    received_to = _day("to", given["to"]) if "to" in given else None
    if received_from and received_to and received_from > received_to:
        raise _refused("to", "a day on or after from")
    return Search(
        patient=searched(given.get("patient")),
        member_id=searched(given.get("member")),
        questionnaires=forms_of(catalog, given["drug"]) if "drug" in given else None,
        status=status,
        received_from=received_from,
        received_to=received_to,
        reference=reference,
        limit=_whole("limit", given["limit"], 1, MAX_LIMIT) if "limit" in given else 25,
        offset=_whole("offset", given["offset"], 0, 10**9) if "offset" in given else 0,
    )


def page_of(
    path: str,
    params: Mapping[str, str],
    search: Search,
    total: int,
    shown: int,
    also: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Where a page is in its list: the filters applied, its first and last
    positions, the total, and the links to the pages before and after (with
    ``also`` in their query: which list)."""
    kept = {k: params[k] for k in PARAMETERS if params.get(k, "").strip()}

    def link(offset: int) -> str:
        query = urlencode({**(also or {}), **kept, "limit": search.limit, "offset": offset})
        return f"{path}?{query}"

    after = search.offset + search.limit
    return {
        "total": total,
        "offset": search.offset,
        "limit": search.limit,
        "first": search.offset + 1 if shown else 0,
        "last": search.offset + shown,
        "filters": kept,
        "next": link(after) if after < total else None,
        "previous": link(max(0, search.offset - search.limit)) if search.offset else None,
    }
