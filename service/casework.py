"""The store's side of the work around a determination: the review queue,
a pharmacist's decision with its audit trail, each office's submissions,
the drafts an office saves, and the records the metrics count.

Plain SQL over the store's connection (``Store.database``), the same on
SQLite and PostgreSQL. A decision replaces the record's current
determination and ClaimResponse only while the record still awaits review
(checked in the same statement), so two pharmacists cannot both decide it.

The queue, the pharmacist's decided cases and an office's history are
searched and paged here (:meth:`Casework.search`): filters on the patient's
name, the member id, the form (the drug), where the request stands, the day
received and the reference, and pages by limit and offset with the total
matching, in an order with the record id last, so it is total.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from service.store import COLUMNS, Record, Store

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM determinations"
ACTION_COLUMNS = (
    "id", "record_id", "at", "who", "action", "reasons", "rationale", "request",
    "outcome_before", "outcome_after", "override",
)  # fmt: skip
DRAFT_COLUMNS = ("id", "owner", "questionnaire", "label", "created_at", "updated_at", "response")


@dataclass(frozen=True)
class ReviewAction:
    """One thing a pharmacist did to a case: who, when, what changed, why."""

    id: str
    record_id: str
    at: str
    who: str
    action: str  # approve, deny or pend
    reasons: list[str]  # the policy sections a denial rests on
    rationale: str
    request: str | None  # what a pend asks the office to send
    outcome_before: str
    outcome_after: str
    # a denial's override: the sections cited although the criteria show
    # them met or not applying, and why (None: nothing overridden)
    override: dict[str, Any] | None = None


# where a request stands, as a filter: the SQL condition of each
STATUSES = {
    "approved": "outcome = 'approved'",
    "denied": "outcome = 'denied'",
    "investigational": "outcome = 'investigational'",
    # pended for missing answers or by a pharmacist asking for something
    "pended": "outcome = 'pended' AND (state IS NULL OR state <> 'awaiting-review')",
    "in-review": "state = 'awaiting-review'",
}
# the orders a list is read in, the record id last so the order is total
ORDERS = {
    # the queue: expedited first, then the oldest by when the decision clock
    # started (the receipt, or the office's last reply to a pend: it runs again from it)
    "queue": "CASE priority WHEN 'expedited' THEN 0 ELSE 1 END,"
    " COALESCE(replied_at, received_at), id",
    "newest": "received_at DESC, id DESC",
    "decided": "decided_at DESC, id DESC",
}


@dataclass(frozen=True)
class Search:
    """Which records a list shows and which page of them. Text is matched
    as the store keeps it (casefolded, service/migrations.py ``searched``):
    ``patient`` anywhere in the name, ``member_id`` and ``reference`` whole;
    ``questionnaires`` are the forms of the drug asked for (None: any, empty:
    none); the dates are days received (UTC), both included."""

    patient: str | None = None
    member_id: str | None = None
    questionnaires: tuple[str, ...] | None = None
    status: str | None = None
    received_from: date | None = None
    received_to: date | None = None
    reference: str | None = None
    limit: int = 25
    offset: int = 0


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class Draft:
    id: str
    owner: str
    questionnaire: str
    label: str
    created_at: str
    updated_at: str
    response: dict[str, Any]


class Casework:
    def __init__(self, store: Store) -> None:
        self.store = store

    def decide(
        self,
        record: Record,
        determination: dict[str, Any],
        claim_response: dict[str, Any],
        action: ReviewAction,
    ) -> bool:
        """Record the pharmacist's decision and its action; False when the
        record no longer awaits review (decided meanwhile)."""
        with self.store.database() as db, db.transaction():
            m = db.mark
            updated = db.execute(
                f"UPDATE determinations SET determination = {m}, claim_response = {m},"
                f" outcome = {m}, state = 'reviewed', decided_at = {m}, reviewer = {m}"
                f" WHERE id = {m} AND state = 'awaiting-review' RETURNING id",
                (
                    json.dumps(determination), json.dumps(claim_response),
                    action.outcome_after, action.at, action.who, record.id,
                ),
            )  # fmt: skip
            if not updated:
                return False
            db.execute(
                f"INSERT INTO review_actions ({', '.join(ACTION_COLUMNS)})"
                f" VALUES ({', '.join([m] * len(ACTION_COLUMNS))})",
                (
                    action.id, action.record_id, action.at, action.who, action.action,
                    json.dumps(action.reasons), action.rationale, action.request,
                    action.outcome_before, action.outcome_after,
                    json.dumps(action.override) if action.override else None,
                ),
            )  # fmt: skip
        return True

    def actions(self, record_id: str) -> list[ReviewAction]:
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT {', '.join(ACTION_COLUMNS)} FROM review_actions"
                f" WHERE record_id = {db.mark} ORDER BY at, id",
                (record_id,),
            )
        actions = []
        for row in rows:
            values = dict(zip(ACTION_COLUMNS, row, strict=True))
            values["reasons"] = json.loads(values["reasons"])
            values["override"] = json.loads(values["override"]) if values["override"] else None
            actions.append(ReviewAction(**values))
        return actions

    def search(
        self, search: Search, order: str, where: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    ) -> tuple[list[Record], int]:
        """A page of the records ``search`` finds among those ``where`` allows
        (each a condition with ``?`` for its values), and how many it finds
        in all."""
        conditions = list(where)
        if search.patient:
            conditions.append(("search_patient LIKE ? ESCAPE '\\'", (_like(search.patient),)))
        if search.member_id:
            conditions.append(("search_member_id = ?", (search.member_id,)))
        if search.reference:
            conditions.append(("reference = ?", (search.reference,)))
        if search.questionnaires is not None:
            forms = search.questionnaires or ("",)  # no form: nothing matches
            conditions.append((f"questionnaire IN ({', '.join('?' * len(forms))})", forms))
        if search.status:
            conditions.append((STATUSES[search.status], ()))
        if search.received_from:
            conditions.append(("received_at >= ?", (search.received_from.isoformat(),)))
        if search.received_to:
            after = search.received_to + timedelta(days=1)
            conditions.append(("received_at < ?", (after.isoformat(),)))
        with self.store.database() as db:
            clause = " AND ".join(f"({c})" for c, _ in conditions) or "1 = 1"
            clause = clause.replace("?", db.mark)
            values = tuple(v for _, vs in conditions for v in vs)
            total = int(
                db.execute(f"SELECT count(*) FROM determinations WHERE {clause}", values)[0][0]
            )
            rows = db.execute(
                f"{_SELECT} WHERE {clause} ORDER BY {ORDERS[order]}"
                f" LIMIT {db.mark} OFFSET {db.mark}",
                (*values, search.limit, search.offset),
            )
        return [Record.from_row(row) for row in rows], total

    def later_requests(self, pended: list[Record]) -> dict[str, str]:
        """Of these pended records, those a later request of the same owner
        for the same member under the same policy followed (the pend
        completed by a new request): record id → the later record's id."""
        members = sorted({r.member for r in pended if r.member and r.outcome == "pended"})
        if not members:
            return {}
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT id, member, policy, owner, received_at FROM determinations"
                f" WHERE member IN ({', '.join([db.mark] * len(members))})"
                " ORDER BY received_at, id",
                tuple(members),
            )
        later: dict[str, str] = {}
        for record in pended:
            if record.outcome != "pended" or record.state == "awaiting-review" or not record.member:
                continue
            for rid, member, policy, owner, received in rows:
                if (member, policy, owner) == (record.member, record.policy, record.owner) and (
                    received > record.received_at
                ):
                    later[record.id] = str(rid)
                    break
        return later

    def received_between(self, start: str, end: str) -> list[Record]:
        """Every record received in [start, end) (ISO instants), for the metrics."""
        with self.store.database() as db:
            m = db.mark
            rows = db.execute(
                f"{_SELECT} WHERE received_at >= {m} AND received_at < {m} ORDER BY received_at",
                (start, end),
            )
        return [Record.from_row(row) for row in rows]

    # --- drafts -----------------------------------------------------------------------

    def save_draft(self, draft: Draft) -> None:
        with self.store.database() as db:
            m = db.mark
            db.execute(
                f"INSERT INTO drafts ({', '.join(DRAFT_COLUMNS)})"
                f" VALUES ({', '.join([m] * len(DRAFT_COLUMNS))})"
                f" ON CONFLICT (id) DO UPDATE SET label = {m}, updated_at = {m}, response = {m},"
                " questionnaire = excluded.questionnaire",
                (
                    draft.id, draft.owner, draft.questionnaire, draft.label, draft.created_at,
                    draft.updated_at, json.dumps(draft.response),
                    draft.label, draft.updated_at, json.dumps(draft.response),
                ),
            )  # fmt: skip

    def drafts(self, owner: str) -> list[Draft]:
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT {', '.join(DRAFT_COLUMNS)} FROM drafts WHERE owner = {db.mark}"
                " ORDER BY updated_at DESC, id",
                (owner,),
            )
        return [_draft(row) for row in rows]

    def draft(self, draft_id: str) -> Draft | None:
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT {', '.join(DRAFT_COLUMNS)} FROM drafts WHERE id = {db.mark}", (draft_id,)
            )
        return _draft(rows[0]) if rows else None

    def delete_draft(self, draft_id: str) -> None:
        with self.store.database() as db:
            db.execute(f"DELETE FROM drafts WHERE id = {db.mark}", (draft_id,))


def _draft(row: tuple[Any, ...]) -> Draft:
    values = dict(zip(DRAFT_COLUMNS, row, strict=True))
    values["response"] = json.loads(values["response"])
    return Draft(**values)
