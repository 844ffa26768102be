"""The documents a stored request carries: each ``valueAttachment`` answer of
its QuestionnaireResponse, named by a stable id, with what serving it needs.

A document's id is a digest of exactly what is served — the decoded bytes,
the declared content type and the title — so the same link always opens the
same document: a later version of the answers that adds, drops or reorders
documents changes no other document's link, and an id is never reused for
something else. A position (``/documents/2``) would shift when answers
change; a ``linkId`` names a question, which may hold several documents.
The id says nothing of the document (no title, no patient data in a URL or
a log line).

An attachment sent as a ``url`` only carries no bytes: it is listed, with
no id, and nothing here fetches it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# the types a browser may show in the page's tab: documents and pictures
# that carry no script; anything else is downloaded, never rendered
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"})
DOWNLOAD_TYPE = "application/octet-stream"
# the character sets plain text keeps when declared (any other: UTF-8)
TEXT_CHARSETS = frozenset({"utf-8", "us-ascii", "iso-8859-1", "windows-1252"})
_ID_LENGTH = 32  # hex digits of SHA-256: 128 bits


@dataclass(frozen=True)
class Document:
    """One attachment of a request."""

    link_id: str  # the question it answers
    title: str | None
    content_type: str | None  # as declared by the sender
    size: int | None  # bytes: of the data carried, else as declared
    data: bytes | None  # None: a url only, nothing stored to serve
    url: str | None

    @property
    def id(self) -> str | None:
        """The stable id of a document the request carries (None: a url only)."""
        if self.data is None:
            return None
        digest = hashlib.sha256()
        for part in (self.content_type or "", self.title or ""):
            digest.update(part.encode("utf-8") + b"\0")
        digest.update(self.data)
        return digest.hexdigest()[:_ID_LENGTH]

    @property
    def media_type(self) -> str:
        """The declared type's ``type/subtype``, lowercased ('' if none)."""
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def inline(self) -> bool:
        """Whether a browser may show it in place (a PDF, a picture, plain text)."""
        return self.media_type in INLINE_TYPES

    @property
    def served_type(self) -> str:
        """The Content-Type it is served with: its own for an allowed type
        (plain text in its declared character set when a common one, else
        UTF-8), else ``application/octet-stream``."""
        if not self.inline:
            return DOWNLOAD_TYPE
        if self.media_type != "text/plain":
            return self.media_type
        declared = re.search(r";\s*charset\s*=\s*\"?([\w.:-]+)", self.content_type or "", re.I)
        charset = declared[1].lower() if declared else "utf-8"
        return f"text/plain; charset={charset if charset in TEXT_CHARSETS else 'utf-8'}"


def _attachment(link_id: str, value: Mapping[str, Any]) -> Document:
    raw = value.get("data")
    data = None
    if isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            data = None  # refused when received: not in a stored request
    declared = value.get("size")
    size = len(data) if data is not None else declared if isinstance(declared, int) else None
    title, content_type, url = value.get("title"), value.get("contentType"), value.get("url")
    return Document(
        link_id=link_id,
        title=title if isinstance(title, str) and title.strip() else None,
        content_type=content_type if isinstance(content_type, str) else None,
        size=size,
        data=data,
        url=url if isinstance(url, str) else None,
    )


def _items(items: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each answer of ``items`` with its item's linkId, in the response's
    order (an item's answers, then what they and the item nest)."""
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        link_id = str(item.get("linkId", ""))
        answers = item.get("answer")
        for answer in answers if isinstance(answers, list) else []:
            if isinstance(answer, Mapping):
                yield link_id, answer
                yield from _items(answer.get("item"))
        yield from _items(item.get("item"))


def documents(response: Mapping[str, Any]) -> list[Document]:
    """Every attachment a QuestionnaireResponse carries, in its order."""
    return [
        _attachment(link_id, answer["valueAttachment"])
        for link_id, answer in _items(response.get("item"))
        if isinstance(answer.get("valueAttachment"), Mapping)
    ]


def find(response: Mapping[str, Any], document_id: str) -> Document | None:
    """The document of the response with this id, or None."""
    for document in documents(response):
        if document.id is not None and document.id == document_id:
            return document
    return None
