"""What every router of the service shares: the service's state, FHIR JSON
responses, bounded body reading and the content-type check.

The routers (one per concern: FHIR reads, DTR operations, scoring and PAS
outputs, the portal) stay thin over the pure modules; this module holds the
little HTTP glue they have in common, so none of them repeats it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from access.identity import Identity
from qpackage.catalog import Catalog
from review.config import PayerConfig
from review.notice import zone_of
from scoring.outcome import InvalidInput, Issue, operation_outcome
from service.jsontext import dump
from service.settings import Settings
from service.store import AuditEntry, Store

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = {"application/fhir+json", "application/json"}


class FHIRResponse(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return dump(content)


def outcome_response(
    issues: list[Issue], status: int, request_id: str | None = None
) -> FHIRResponse:
    headers = {"X-Request-ID": request_id} if request_id else None
    return FHIRResponse(operation_outcome(issues), status_code=status, headers=headers)


class AccessDenied(Exception):
    """401 (who are you?) or 403 (not allowed), with its ``WWW-Authenticate``."""

    def __init__(self, status: int, message: str, challenge: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Service:
    """The state the routers share, built once by ``create_app``."""

    settings: Settings
    catalog: Catalog
    store: Store
    clock: Callable[[], date]
    started: str
    now: Callable[[], datetime] = utc_now
    # reads by id give the current version of each resource
    questionnaires: dict[str, dict[str, Any]] = field(default_factory=dict)
    libraries: dict[str, dict[str, Any]] = field(default_factory=dict)
    value_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # each payer's configuration (deadlines, appeals, review), by identifier;
    # a payer without one decides automatically
    payers: dict[str, PayerConfig] = field(default_factory=dict)

    def audit(self, request: Request, what: str, member: str | None) -> None:
        """Record a read of a member's data: who (the authenticated caller and
        its address), when, what."""
        identity: Identity | None = getattr(request.state, "identity", None)
        address = request.client.host if request.client else "unknown"
        who = identity.describe() if identity else "unauthenticated"
        self.store.audit(
            AuditEntry(
                id=uuid.uuid4().hex,
                at=self.now().isoformat(timespec="milliseconds"),
                request_id=request_id(request),
                who=f"{who} from {address}",
                what=what,
                member=member,
            )
        )

    def zone(self, questionnaire: str) -> tzinfo:
        """The time zone of the payer whose form ``questionnaire`` (url|version)
        is: every time a person reads about a request to it is shown there
        (UTC for a payer without a file)."""
        package = self.catalog.packages.get(questionnaire)
        return zone_of(self.payers.get(package.policy.policy.payer.identifier) if package else None)

    @property
    def base(self) -> str:
        """The public base URL: configuration, never the request's ``Host``
        (which a client chooses, and which would land in ``Location`` and in
        what the service publishes)."""
        return self.settings.public_url

    async def read_body(self, request: Request, limit: int | None = None) -> bytes:
        """The body, refused past ``limit`` bytes (default: the tight limit of
        every body but a response, which may carry attachments)."""
        limit = limit or self.settings.max_body
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        body = bytearray()
        chunks = request.stream().__aiter__()
        timeout = self.settings.body_timeout
        late = InvalidInput([Issue("timeout", "the body was not sent in time")], 408)
        while True:
            waited = time.monotonic()
            try:
                # a client that stops sending holds a connection: not for long
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise late from None
            # a server that hands over a chunk without yielding to the event loop
            # (the test client) is not interrupted by the timeout: its lateness is
            # seen once the chunk comes
            if time.monotonic() - waited > timeout:
                raise late
            body.extend(chunk)
            if len(body) > limit:
                raise BodyTooLarge(limit)
        return bytes(body)


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def require_json(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ACCEPTED_TYPES:
        raise InvalidInput(
            [
                Issue(
                    "not-supported",
                    f"content type {media or '(none)'!r} is not accepted; send application/fhir+json",
                )
            ],
            415,
        )


def not_found(kind: str, rid: str) -> StarletteHTTPException:
    return StarletteHTTPException(404, f"{kind}/{rid} is not known to this service")
