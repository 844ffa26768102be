"""The store's schema, as numbered migrations applied on start, for SQLite and
PostgreSQL alike.

Each migration is plain SQL both databases read the same way, with an
optional step in Python for data SQL cannot derive portably (a member key
out of a stored response's JSON). The applied version is kept in
``schema_version``; opening a database applies, in order and each in its
own transaction, every migration it has not had, so a database written by
any earlier release opens, migrates and serves its old records. A database
of the release before versions existed (a ``determinations`` table and no
``schema_version``) is recognised by the tables and columns it has.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


class Database(Protocol):
    """What a migration needs of a connection (see the two stores)."""

    mark: str  # the parameter placeholder: ? (SQLite) or %s (PostgreSQL)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def tables(self) -> set[str]: ...

    def columns(self, table: str) -> set[str]: ...


def _members(db: Database) -> None:
    """Each stored record's member, from its response's subject."""
    from review.member import member_key  # the one spelling of a member key

    for rid, response in db.execute("SELECT id, response FROM determinations"):
        member = member_key(json.loads(response).get("subject"))
        db.execute(
            f"UPDATE determinations SET member = {db.mark} WHERE id = {db.mark}", (member, rid)
        )


def _references(db: Database) -> None:
    """Each stored record's short reference and the text it is searched by
    (the patient's name and member id, casefolded)."""
    from review.reference import candidates

    taken: set[str] = set()
    for rid, response in db.execute("SELECT id, response FROM determinations ORDER BY id"):
        reference = next(r for r in candidates(rid) if r not in taken)
        taken.add(reference)
        db.execute(
            f"UPDATE determinations SET reference = {db.mark}, search_patient = {db.mark},"
            f" search_member_id = {db.mark} WHERE id = {db.mark}",
            (reference, *search_text(json.loads(response)), rid),
        )


def searched(text: Any) -> str | None:
    """A name or id as the store searches it: casefolded, spaces collapsed
    (done here, not by SQL's lower(), which SQLite applies to ASCII only)."""
    return " ".join(text.casefold().split()) or None if isinstance(text, str) else None


def search_text(response: dict[str, Any]) -> tuple[str | None, str | None]:
    """The patient's name and member id a response is searched by."""
    subject = response.get("subject")
    subject = subject if isinstance(subject, dict) else {}
    identifier = subject.get("identifier")
    member_id = identifier.get("value") if isinstance(identifier, dict) else None
    if member_id is None and isinstance(subject.get("reference"), str):
        member_id = subject["reference"].rsplit("/", 1)[-1]  # as review.request.facts reads it
    return searched(subject.get("display")), searched(member_id)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    then: Callable[[Database], None] | None = None


MIGRATIONS = (
    Migration(
        1,
        "every accepted response and its determination",
        (
            """
            CREATE TABLE determinations (
                id              TEXT PRIMARY KEY,
                response_key    TEXT NOT NULL UNIQUE,
                response_id     TEXT,
                request_id      TEXT NOT NULL,
                received_at     TEXT NOT NULL,
                questionnaire   TEXT NOT NULL,
                policy          TEXT NOT NULL,
                policy_version  TEXT NOT NULL,
                evaluated_at    TEXT NOT NULL,
                outcome         TEXT NOT NULL,
                response        TEXT NOT NULL,
                determination   TEXT NOT NULL,
                claim_response  TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        2,
        "the member of each record, indexed with the policy (a renewal's prefill)",
        (
            "ALTER TABLE determinations ADD COLUMN member TEXT",
            "CREATE INDEX determinations_member ON determinations (member, policy, outcome)",
        ),
        then=_members,
    ),
    Migration(
        3,
        "error reports of DTR clients ($log-questionnaire-errors)",
        (
            """
            CREATE TABLE questionnaire_errors (
                id              TEXT PRIMARY KEY,
                received_at     TEXT NOT NULL,
                request_id      TEXT NOT NULL,
                questionnaire   TEXT NOT NULL,
                outcome         TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        4,
        "an audit record of every read of a member's data (who, when, what)",
        (
            """
            CREATE TABLE audit_reads (
                id              TEXT PRIMARY KEY,
                at              TEXT NOT NULL,
                request_id      TEXT NOT NULL,
                who             TEXT NOT NULL,
                what            TEXT NOT NULL,
                member          TEXT
            )
            """,
            "CREATE INDEX audit_reads_member ON audit_reads (member, at)",
        ),
    ),
    Migration(
        5,
        "who may call: registered clients, their used assertion ids, portal users and"
        " sessions, the token-signing secret; the owner of each record",
        (
            """
            CREATE TABLE clients (
                id              TEXT PRIMARY KEY,
                name            TEXT NOT NULL,
                scopes          TEXT NOT NULL,
                jwks            TEXT,
                jwks_url        TEXT,
                organization    TEXT,
                active          INTEGER NOT NULL,
                created_at      TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE client_assertions (
                client_id       TEXT NOT NULL,
                jti             TEXT NOT NULL,
                expires_at      BIGINT NOT NULL,
                PRIMARY KEY (client_id, jti)
            )
            """,
            """
            CREATE TABLE users (
                username        TEXT PRIMARY KEY,
                name            TEXT NOT NULL,
                role            TEXT NOT NULL,
                organization    TEXT,
                password_hash   TEXT NOT NULL,
                active          INTEGER NOT NULL,
                created_at      TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE sessions (
                id              TEXT PRIMARY KEY,
                username        TEXT NOT NULL,
                csrf            TEXT NOT NULL,
                created_at      TEXT NOT NULL,
                expires_at      BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE service_secrets (
                name            TEXT PRIMARY KEY,
                secret          TEXT NOT NULL,
                created_at      TEXT NOT NULL
            )
            """,
            # records stored before callers authenticated have no owner
            "ALTER TABLE determinations ADD COLUMN owner TEXT",
        ),
    ),
    Migration(
        6,
        "pharmacist review (state, priority, decision time, reviewer, the scorer's"
        " recommendation; every review action), drafts saved from the portal",
        (
            # automatic, awaiting-review or reviewed; NULL (older records): automatic
            "ALTER TABLE determinations ADD COLUMN state TEXT",
            "ALTER TABLE determinations ADD COLUMN priority TEXT",
            "ALTER TABLE determinations ADD COLUMN decided_at TEXT",
            "ALTER TABLE determinations ADD COLUMN reviewer TEXT",
            "ALTER TABLE determinations ADD COLUMN recommendation TEXT",
            "CREATE INDEX determinations_state ON determinations (state, priority, received_at)",
            "CREATE INDEX determinations_owner ON determinations (owner, received_at)",
            """
            CREATE TABLE review_actions (
                id              TEXT PRIMARY KEY,
                record_id       TEXT NOT NULL,
                at              TEXT NOT NULL,
                who             TEXT NOT NULL,
                action          TEXT NOT NULL,
                reasons         TEXT NOT NULL,
                rationale       TEXT NOT NULL,
                request         TEXT,
                outcome_before  TEXT NOT NULL,
                outcome_after   TEXT NOT NULL
            )
            """,
            "CREATE INDEX review_actions_record ON review_actions (record_id, at)",
            """
            CREATE TABLE drafts (
                id              TEXT PRIMARY KEY,
                owner           TEXT NOT NULL,
                questionnaire   TEXT NOT NULL,
                label           TEXT NOT NULL,
                created_at      TEXT NOT NULL,
                updated_at      TEXT NOT NULL,
                response        TEXT NOT NULL
            )
            """,
            "CREATE INDEX drafts_owner ON drafts (owner, updated_at)",
        ),
    ),
    Migration(
        7,
        "the response as sent, when it answered an earlier version of its form than the one"
        " in effect that decided it (its answers carried over)",
        ("ALTER TABLE determinations ADD COLUMN submitted TEXT",),
    ),
    Migration(
        8,
        "a denial's override: the sections a pharmacist cited although the criteria show them"
        " met or not applying, and why",
        ("ALTER TABLE review_actions ADD COLUMN override TEXT",),
    ),
    Migration(
        9,
        "an office's replies to a pended request, joined to the same record: the note, the"
        " documents sent, what it answered, and the answers as they were before",
        (
            """
            CREATE TABLE replies (
                id              TEXT PRIMARY KEY,
                record_id       TEXT NOT NULL,
                at              TEXT NOT NULL,
                who             TEXT NOT NULL,
                request_id      TEXT NOT NULL,
                note            TEXT NOT NULL,
                documents       TEXT NOT NULL,
                asked           TEXT,
                asked_at        TEXT,
                response_before TEXT NOT NULL,
                outcome_before  TEXT NOT NULL,
                outcome_after   TEXT NOT NULL,
                state_after     TEXT NOT NULL
            )
            """,
            "CREATE INDEX replies_record ON replies (record_id, at)",
        ),
    ),
    Migration(
        10,
        "a short reference number for each record (unique, searchable) and the patient's name"
        " and member id as the office history and the review queue search them",
        (
            "ALTER TABLE determinations ADD COLUMN reference TEXT",
            "ALTER TABLE determinations ADD COLUMN search_patient TEXT",
            "ALTER TABLE determinations ADD COLUMN search_member_id TEXT",
            "CREATE UNIQUE INDEX determinations_reference ON determinations (reference)",
            "CREATE INDEX determinations_received ON determinations (received_at, id)",
        ),
        then=_references,
    ),
    Migration(
        11,
        "when the office last replied to a pend of each record: the decision deadline runs"
        " again from it, and the pharmacist's queue orders a replied case by it",
        (
            "ALTER TABLE determinations ADD COLUMN replied_at TEXT",
            "UPDATE determinations SET replied_at ="
            " (SELECT max(at) FROM replies WHERE replies.record_id = determinations.id)",
        ),
    ),
    Migration(
        12,
        "the progress of an impact report (dtr impact), so that a run stopped midway resumes:"
        " the last record re-scored, the report so far and each request's row",
        (
            """
            CREATE TABLE impact_runs (
                id              TEXT PRIMARY KEY,
                policy          TEXT NOT NULL,
                started_at      TEXT NOT NULL,
                last_record     TEXT NOT NULL,
                report          TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE impact_rows (
                run             TEXT NOT NULL,
                record          TEXT NOT NULL,
                row             TEXT NOT NULL,
                PRIMARY KEY (run, record)
            )
            """,
        ),
    ),
    Migration(
        13,
        "an impact report's run cut into parts, each claimed by one process (on PostgreSQL with"
        " FOR UPDATE SKIP LOCKED, so several machines share a run) and kept whole with its"
        " report; the run's finisher is the one process that writes the report. A run begun"
        " under 12 (kept as a last record) starts again",
        (
            "DELETE FROM impact_rows",
            "DELETE FROM impact_runs",
            "ALTER TABLE impact_runs DROP COLUMN last_record",
            "ALTER TABLE impact_runs DROP COLUMN report",
            "ALTER TABLE impact_runs ADD COLUMN finished_by TEXT",
            """
            CREATE TABLE impact_parts (
                run             TEXT NOT NULL,
                part            INTEGER NOT NULL,
                first_record    TEXT NOT NULL,
                last_record     TEXT NOT NULL,
                done_at         TEXT,
                done_by         TEXT,
                report          TEXT,
                PRIMARY KEY (run, part)
            )
            """,
        ),
    ),
    Migration(
        14,
        "CRD: which registered clients are CDS clients, the jku URLs each may name, whether"
        " the service may fetch missing prefetch from its EHR; each coverage assertion made,"
        " so that $questionnaire-package takes its id as context",
        (
            "ALTER TABLE clients ADD COLUMN cds_hooks INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE clients ADD COLUMN cds_jku TEXT",
            "ALTER TABLE clients ADD COLUMN cds_fetch INTEGER NOT NULL DEFAULT 0",
            """
            CREATE TABLE coverage_assertions (
                id              TEXT PRIMARY KEY,
                made_at         TEXT NOT NULL,
                client_id       TEXT NOT NULL,
                member          TEXT,
                policy          TEXT NOT NULL,
                order_ref       TEXT NOT NULL,
                coverage_ref    TEXT NOT NULL,
                questionnaires  TEXT NOT NULL,
                extension       TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        15,
        "an impact report kept once its run finishes, for the pharmacist's page: the report,"
        " who finished it and when, its counts; each request's CSV row stays in impact_rows"
        " under the report's id. A run in progress names the version it re-scores under",
        (
            """
            CREATE TABLE impact_reports (
                id              TEXT PRIMARY KEY,
                run             TEXT NOT NULL,
                policy          TEXT NOT NULL,
                new_version     TEXT NOT NULL,
                old_versions    TEXT NOT NULL,
                started_at      TEXT NOT NULL,
                finished_at     TEXT NOT NULL,
                finished_by     TEXT NOT NULL,
                total           INTEGER NOT NULL,
                changed         INTEGER NOT NULL,
                report          TEXT NOT NULL
            )
            """,
            "ALTER TABLE impact_runs ADD COLUMN new_version TEXT",
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


def _found_version(db: Database) -> int:
    """The version of a database written before ``schema_version`` existed."""
    tables = db.tables()
    if "determinations" not in tables:
        return 0
    if "member" not in db.columns("determinations"):
        return 1
    return 3 if "questionnaire_errors" in tables else 2


def current_version(db: Database) -> int:
    if "schema_version" not in db.tables():
        return _found_version(db)
    rows = db.execute("SELECT max(version) FROM schema_version")
    return int(rows[0][0] or 0)


def pending(version: int) -> Iterator[Migration]:
    return (m for m in MIGRATIONS if m.version > version)


def migrate(db: Database) -> tuple[int, int]:
    """Bring the database to the latest version; (version found, version now)."""
    with db.transaction():
        found = current_version(db)
        if "schema_version" not in db.tables():
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            if found:
                db.execute(f"INSERT INTO schema_version (version) VALUES ({db.mark})", (found,))
    for migration in pending(found):
        with db.transaction():
            # another instance may have applied it meanwhile (PostgreSQL)
            if current_version(db) >= migration.version:
                continue
            for statement in migration.statements:
                db.execute(statement)
            if migration.then is not None:
                migration.then(db)
            db.execute(
                f"INSERT INTO schema_version (version) VALUES ({db.mark})", (migration.version,)
            )
    return found, current_version(db)
