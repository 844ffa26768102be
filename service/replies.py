"""An office's reply to a pended request, joined to the same record.

A pended request is answered by sending its response again to
``QuestionnaireResponse/$evaluate`` as a Parameters body with the pended
request's id as ``context`` (the id ``$questionnaire-package`` reopened it
with), and beside the ``response`` an optional ``note`` (valueString) and
any number of ``document`` parameters (valueAttachment): what the pharmacist
asked for, which the form has no question for.

The reply is not a new request. The record keeps its id and its first
receipt (the metrics count one request and time it from that receipt); its
answers become the reply's, the earlier ones kept in the reply's row with
the note, the documents, what was asked and the outcome before and after.
A request a pharmacist pended goes back to the pharmacist's queue with the
reply; a request the scorer pended (missing answers) is scored again, as any
request is (decided at once, or sent to a pharmacist by the payer's rule).
The decision deadline runs again from the reply's receipt, kept on the
record (``replied_at``): the pharmacist's queue orders the case by it. The
patient's name and member id the case is searched by are the reply's.

What is refused, with nothing changed: a reply to a request that is not
pended (decided, or with a pharmacist who asked nothing) is a 409; to a
request of another organization or client, or one that does not exist, a
404 alike (ids cannot be probed); a document over the attachment size limit
a 413; a document of a type a pharmacist cannot open in place (anything but
PDF, PNG, JPEG, GIF and plain text) a 415; a response about another member
or another policy a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from review.documents import INLINE_TYPES, Document, documents
from scoring.outcome import InvalidInput, Issue
from scoring.response import MAX_ATTACHMENT_BYTES
from service.migrations import search_text
from service.store import COLUMNS, Store

REPLY_COLUMNS = (
    "id", "record_id", "at", "who", "request_id", "note", "documents", "asked", "asked_at",
    "response_before", "outcome_before", "outcome_after", "state_after",
)  # fmt: skip
# the record's columns a reply replaces (its id, owner, member and first receipt stay)
REPLACED = (
    "questionnaire", "policy_version", "evaluated_at", "outcome", "response", "determination",
    "claim_response", "state", "decided_at", "recommendation", "submitted",
)  # fmt: skip
# the types a reply's documents may have: those a pharmacist opens in place
REPLY_TYPES = tuple(sorted(INLINE_TYPES))
MAX_NOTE = 4000  # characters


@dataclass(frozen=True)
class ReplyRequest:
    """What a Parameters body adds to its response when it is a reply."""

    context: str  # the pended request's id
    note: str
    documents: list[dict[str, Any]]  # FHIR Attachments, data in base64


@dataclass(frozen=True)
class Reply:
    """One reply an office made to a pended request."""

    id: str
    record_id: str
    at: str  # when it was received: the decision deadline runs from it
    who: str
    request_id: str
    note: str
    documents: list[dict[str, Any]]
    asked: str | None  # what the pharmacist asked for (None: the scorer's pend)
    asked_at: str | None  # when the request was pended
    response_before: dict[str, Any]  # the answers the reply replaced
    outcome_before: str
    outcome_after: str
    state_after: str

    def row(self) -> tuple[Any, ...]:
        values = {**self.__dict__}
        values["documents"] = json.dumps(self.documents)
        values["response_before"] = json.dumps(self.response_before)
        return tuple(values[c] for c in REPLY_COLUMNS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Reply:
        values = dict(zip(REPLY_COLUMNS, row, strict=True))
        values["documents"] = json.loads(values["documents"])
        values["response_before"] = json.loads(values["response_before"])
        return cls(**values)


def _refused(status: int, code: Any, message: str, where: str | None = None) -> InvalidInput:
    return InvalidInput([Issue(code, message, where)], status)


def type_refused(document: Document, where: str) -> InvalidInput | None:
    """A 415 for a document a pharmacist could not open in place."""
    if document.media_type in INLINE_TYPES:
        return None
    name = document.title or "a document"
    given = document.media_type or "no contentType"
    return _refused(
        415,
        "not-supported",
        f"{name} is {given}: a reply's documents are {', '.join(REPLY_TYPES)}"
        " (scan or print other files to PDF)",
        where,
    )


def _document(value: Any, position: int) -> dict[str, Any]:
    where = f"Parameters.parameter[{position}].valueAttachment"
    if not isinstance(value, Mapping):
        raise _refused(400, "structure", "a document parameter carries a valueAttachment", where)
    data, title, content_type = value.get("data"), value.get("title"), value.get("contentType")
    if not isinstance(data, str) or not data:
        raise _refused(
            400, "required", "a reply's document carries its bytes in data (base64)", where
        )
    try:
        size = len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise _refused(400, "value", "the document's data is not valid base64", where) from None
    if title is not None and not isinstance(title, str):
        raise _refused(400, "value", "the document's title must be a string", where)
    if not isinstance(content_type, str):
        content_type = None
    document = Document("reply", title, content_type, size, b"", None)
    if size > MAX_ATTACHMENT_BYTES:
        raise _refused(
            413,
            "too-long",
            f"{title or 'the document'} is {size / 1024 / 1024:.1f} MB; the limit is"
            f" {MAX_ATTACHMENT_BYTES // 1024 // 1024} MB",
            where,
        )
    refused = type_refused(document, where)
    if refused is not None:
        raise refused
    return {
        "contentType": content_type,
        "data": data,
        "size": size,
        **({"title": title} if title else {}),
    }


def reply_parameters(parameters: Mapping[str, Any]) -> ReplyRequest | None:
    """The reply a Parameters body makes (None: it is a new request). Its
    ``context`` names the pended request; a note or a document without one
    is a 400, as is more than one context or note."""
    entries = parameters.get("parameter")
    entries = entries if isinstance(entries, list) else []
    named: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for position, entry in enumerate(entries):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            named.setdefault(entry["name"], []).append((position, entry))
    contexts, notes = named.get("context", []), named.get("note", [])
    attached = named.get("document", [])
    if not contexts:
        if notes or attached:
            raise _refused(
                400,
                "required",
                "a note or a document answers a pended request: give its id as 'context'",
            )
        return None
    if len(contexts) > 1 or len(notes) > 1:
        raise _refused(400, "structure", "a reply has one 'context' and at most one 'note'")
    context = contexts[0][1].get("valueString")
    if not isinstance(context, str) or not context.strip():
        raise _refused(400, "value", "'context' is the pended request's id, as valueString")
    note = notes[0][1].get("valueString", "") if notes else ""
    if not isinstance(note, str):
        raise _refused(400, "value", "'note' is text, as valueString")
    if len(note) > MAX_NOTE:
        raise _refused(400, "too-long", f"the note is {len(note)} characters; at most {MAX_NOTE}")
    return ReplyRequest(
        context=context.strip(),
        note=note.strip(),
        documents=[_document(e.get("valueAttachment"), p) for p, e in attached],
    )


def new_documents_refused(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> InvalidInput | None:
    """A 415 for an attachment answer the reply adds of a type a pharmacist
    could not open (those sent before stay as they were)."""
    earlier = {d.id for d in documents(before)}
    for document in documents(after):
        if document.data is not None and document.id not in earlier:
            refused = type_refused(document, f"QuestionnaireResponse.item {document.link_id}")
            if refused is not None:
                return refused
    return None


class Replies:
    """The store's side of replies (plain SQL over ``Store.database``, as
    the casework)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def join(
        self, record_id: str, state_before: str, changes: Mapping[str, Any], reply: Reply
    ) -> bool:
        """Replace the record's answers and determination with the reply's
        and keep the reply; False when the record is no longer as it was
        (``state_before``, pended for the office): decided, or replied to,
        meanwhile."""
        assert set(changes) == set(REPLACED) and set(REPLACED) <= set(COLUMNS)
        json_columns = {"response", "determination", "claim_response", "recommendation",
                        "submitted"}  # fmt: skip
        values = [
            json.dumps(changes[c]) if c in json_columns and changes[c] is not None else changes[c]
            for c in REPLACED
        ]
        # the reply may correct the patient's name or member id: searched as now given
        patient, member_id = search_text(changes["response"])
        with self.store.database() as db, db.transaction():
            m = db.mark
            updated = db.execute(
                f"UPDATE determinations SET {', '.join(f'{c} = {m}' for c in REPLACED)},"
                f" replied_at = {m}, search_patient = {m}, search_member_id = {m}"
                f" WHERE id = {m} AND outcome = 'pended' AND state <> 'awaiting-review'"
                f" AND state = {m} RETURNING id",
                (*values, reply.at, patient, member_id, record_id, state_before),
            )
            if not updated:
                return False
            db.execute(
                f"INSERT INTO replies ({', '.join(REPLY_COLUMNS)})"
                f" VALUES ({', '.join([m] * len(REPLY_COLUMNS))})",
                reply.row(),
            )
        return True

    def of(self, record_id: str) -> list[Reply]:
        """The replies to a record, oldest first."""
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT {', '.join(REPLY_COLUMNS)} FROM replies WHERE record_id = {db.mark}"
                " ORDER BY at, id",
                (record_id,),
            )
        return [Reply.from_row(row) for row in rows]

    def latest(self, record_id: str) -> Reply | None:
        replies = self.of(record_id)
        return replies[-1] if replies else None


def earlier_documents(replies: list[Reply]) -> dict[str, Any]:
    """The documents the replies sent and those of the answers they
    replaced, as one response's attachment answers: the case lists them
    and the document route finds each by its id (:func:`review.documents.find`)."""
    items: list[dict[str, Any]] = []
    for reply in replies:
        items.append(
            {
                "linkId": f"reply {reply.at}",
                "answer": [{"valueAttachment": d} for d in reply.documents],
            }
        )
        items.extend(reply.response_before.get("item") or [])
    return {"resourceType": "QuestionnaireResponse", "item": items}
