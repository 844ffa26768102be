"""The store's side of the work around a determination: the review queue,
a pharmacist's decision with its audit trail, each office's submissions,
the drafts an office saves, and the records the metrics count.

Plain SQL over the store's connection (``Store.database``), the same on
SQLite and PostgreSQL. A decision replaces the record's current
determination and ClaimResponse only while the record still awaits review
(checked in the same statement), so two pharmacists cannot both decide it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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

    def queue(self) -> list[Record]:
        """Requests awaiting a pharmacist: expedited first, then oldest."""
        with self.store.database() as db:
            rows = db.execute(
                f"{_SELECT} WHERE state = 'awaiting-review'"
                " ORDER BY CASE priority WHEN 'expedited' THEN 0 ELSE 1 END, received_at, id"
            )
        return [Record.from_row(row) for row in rows]

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

    def submissions(self, owner: str | None, limit: int = 100) -> list[Record]:
        """What an owner submitted (None: everyone's, for the payer), newest first."""
        with self.store.database() as db:
            if owner is None:
                rows = db.execute(
                    f"{_SELECT} ORDER BY received_at DESC, id DESC LIMIT {db.mark}", (limit,)
                )
            else:
                rows = db.execute(
                    f"{_SELECT} WHERE owner = {db.mark} ORDER BY received_at DESC, id DESC"
                    f" LIMIT {db.mark}",
                    (owner, limit),
                )
        return [Record.from_row(row) for row in rows]

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
