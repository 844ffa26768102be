"""The documents of a stored request, opened by the people who may read it.

``GET /cases/{record_id}/documents/{document_id}``: one attachment of the
request (:mod:`review.documents` names it by a digest of what it serves, so
the link never shifts when answers change). Who may open it: a signed-in
person who may read the record — the payer's pharmacist, or someone of the
office (organization) that sent it. Another organization's record, an
unknown record and an unknown document are the same 404, so ids cannot be
probed. A backend client's token is a 403 whoever owns the record: a system
reads the request it sent as FHIR (``GET /QuestionnaireResponse/{id}``
carries every attachment), and this route is for a person's browser.

What a browser gets is a document, never a page of this service:

- ``Content-Type``: the declared type for a PDF, a PNG, JPEG or GIF picture
  or plain text (as UTF-8), shown in place; anything else — an HTML page
  included — is ``application/octet-stream`` with ``Content-Disposition:
  attachment``, downloaded and never rendered.
- ``Content-Disposition`` with the document's title as a safe file name
  (RFC 6266: an ASCII ``filename`` and the exact name as RFC 8187/5987
  ``filename*``).
- ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` and a
  content security policy that sandboxes it (:data:`DOCUMENT_CSP`).

Every open is audited as a read of the member's data: who, when, the
record and the document.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from access.identity import Identity
from review.documents import Document, find
from service.auth import requirement
from service.http import AccessDenied, Service, not_found
from service.replies import Replies, earlier_documents

# A sandboxed document with no origin of its own that may load nothing: no
# script, no form, no plugin, no request anywhere. Chromium's PDF viewer
# renders a PDF under it (the browser test opens one); plain text and
# pictures need nothing.
DOCUMENT_CSP = "sandbox; default-src 'none'"
_EXTENSIONS = {
    "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg",
    "image/gif": ".gif", "text/plain": ".txt",
}  # fmt: skip
# what no file name keeps: controls, separators of paths, and what would
# end or escape a quoted header value
_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:;*?<>|%]')


def _reader(request: Request, identity: Annotated[Identity, Depends(requirement("QuestionnaireResponse", "r"))]) -> Identity:  # fmt: skip
    if identity.kind != "user":
        raise AccessDenied(
            403,
            "a request's documents are opened by a signed-in person (the pharmacist, or the"
            " office that sent it); a system reads the request it sent as"
            " GET /QuestionnaireResponse/{id}",
        )
    return identity


Reader = Annotated[Identity, Depends(_reader)]


def filename(document: Document, document_id: str) -> str:
    """The document's title as a file name: its last path part, without
    control characters or header syntax; ``document-{id}`` with the type's
    extension when it has none left."""
    title = unicodedata.normalize("NFC", document.title or "")
    name = _UNSAFE.sub("_", re.split(r"[/\\]", title)[-1]).strip(" ._")
    return name[:150] or f"document-{document_id[:8]}{_EXTENSIONS.get(document.media_type, '')}"


def content_disposition(disposition: str, name: str) -> str:
    """``inline`` or ``attachment`` with ``name`` as RFC 6266 spells it: an
    ASCII fallback for old clients and the exact name as ``filename*``."""
    # letters lose their accents; what has no ASCII form becomes "_"
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(
        c if c.isascii() else "_" for c in decomposed if not unicodedata.combining(c)
    )
    fallback = _UNSAFE.sub("_", ascii_only).strip(" ._") or "document"
    exact = quote(name, safe="!#$&+-.^_`|~")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{exact}"


def router(service: Service) -> APIRouter:
    api = APIRouter()

    @api.get("/cases/{record_id}/documents/{document_id}")
    def open_document(record_id: str, document_id: str, request: Request, caller: Reader) -> Response:  # fmt: skip
        record = service.store.get(record_id)
        if record is None or not caller.reads(record.owner):
            raise not_found("cases", record_id)
        # a document of the answers, else one a reply to a pend sent (or
        # one of the answers a reply replaced: the trail keeps them)
        document = find(record.response, document_id) or find(
            earlier_documents(Replies(service.store).of(record.id)), document_id
        )
        if document is None or document.data is None:
            raise not_found(f"cases/{record_id}/documents", document_id)
        name = filename(document, document_id)
        # the trail names the record and the document (its id and file name)
        what = f"cases/{record_id}/documents/{document_id} ({name})"
        service.audit(request, what, record.member)
        disposition = "inline" if document.inline else "attachment"
        return Response(
            document.data,
            media_type=document.served_type,
            headers={
                "Content-Disposition": content_disposition(disposition, name),
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": DOCUMENT_CSP,
                "Cache-Control": "no-store",
            },
        )

    return api
