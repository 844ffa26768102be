"""Ownership as a typed dependency: the stored thing a path names, if its
caller may have it.

A route that reads or changes one stored request or one draft takes it as
its parameter — ``record: Annotated[Record, owned_record("ClaimResponse",
reader)]``, ``draft: Annotated[Draft, owned_draft(deleter)]`` — instead of
an id it must remember to check. The dependency runs the route's caller
requirement first (401 or 403 as :func:`service.auth.requirement` says),
then looks the thing up: another caller's is a 404, as unknown as one that
does not exist, so ids cannot be probed. A record's read is audited (who,
when, which member) before the route sees it.
"""

# No ``from __future__ import annotations`` here: FastAPI reads each
# dependency's annotations, and those below name the closure's requirement,
# which only an annotation evaluated when the function is made can see.

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from access.identity import Identity
from service.casework import Casework, Draft
from service.http import Service, not_found
from service.store import Record


def owned_record(kind: str, reader: Callable[..., Awaitable[Identity]], suffix: str = "") -> Any:
    """``Depends`` for the record at the path's ``record_id``, read as
    ``kind`` (named so in the 404 and the audit, with ``suffix`` for a view
    of it such as ``/notice``) by a caller ``reader`` allows."""

    def record(
        record_id: str, request: Request, caller: Annotated[Identity, Depends(reader)]
    ) -> Record:
        service: Service = request.app.state.service
        found = service.store.get(record_id)
        if found is None or not caller.reads(found.owner):
            raise not_found(kind, record_id)
        service.audit(request, f"{kind}/{record_id}{suffix}", found.member)
        return found

    return Depends(record)


def owned_draft(allowed: Callable[..., Awaitable[Identity]]) -> Any:
    """``Depends`` for the caller's draft at the path's ``draft_id``, for a
    caller ``allowed`` allows; a draft is its practice's (or its system's)
    alone, so a caller without an owner has none."""

    def draft(
        draft_id: str, request: Request, caller: Annotated[Identity, Depends(allowed)]
    ) -> Draft:
        service: Service = request.app.state.service
        found = Casework(service.store).draft(draft_id)
        if found is None or caller.owner is None or found.owner != caller.owner:
            raise not_found("drafts", draft_id)
        return found

    return Depends(draft)
