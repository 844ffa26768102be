"""Durable storage of every accepted response and its determination.

SQLite by default (one file, WAL journal, so readers never block the one
writer), PostgreSQL when the database setting is a ``postgresql://`` URL, so
several service instances behind a load balancer share one store. A record
is committed before the reply is sent. Records are keyed by the SHA-256 of
the response's canonical JSON: resubmitting the same response (same id, same
content) finds the stored record instead of creating a second one, while a
changed response (a pended one completed later) is a new record and both
are kept.

The store is written once, in SQL both databases read alike, over a small
adapter (:class:`Connections`): SQLite's keeps one connection per thread and
queues writers, of every thread and process, on locks (:class:`SQLiteConnections`);
PostgreSQL's is a connection pool.

Each record also keeps the member it is about (the response's subject, as
:func:`review.member.member_key` spells it), indexed with the policy, so
the draft response of a renewal can say whether this plan approved the
drug before. Error reports of DTR clients (``$log-questionnaire-errors``)
are kept in their own table. The schema is versioned: opening a database
applies the migrations it has not had (``service/migrations.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from review.reference import candidates
from service.jsontext import canonical, dump_text
from service.migrations import Database, migrate, search_text

log = logging.getLogger("dtr.service")

COLUMNS = (
    "id", "response_key", "response_id", "request_id", "received_at", "questionnaire", "policy",
    "policy_version", "evaluated_at", "outcome", "response", "determination", "claim_response",
    "member", "owner", "state", "priority", "decided_at", "reviewer", "recommendation",
    "submitted", "reference", "search_patient", "search_member_id", "replied_at",
)  # fmt: skip
_REFERENCE = COLUMNS.index("reference")
HISTORY = "id, questionnaire, evaluated_at"
AUDIT_COLUMNS = ("id", "at", "request_id", "who", "what", "member")
ERROR_COLUMNS = ("id", "received_at", "request_id", "questionnaire", "outcome")
JSON_COLUMNS = {"response", "determination", "claim_response", "recommendation", "submitted"}


def response_key(response: dict[str, Any], owner: str | None) -> str:
    """The identity of a submitted response: who submitted it and its
    canonical JSON, hashed. The owner is part of it: a copy of another
    caller's response is a new record of the copier's, never a way to the
    original's determination."""
    return hashlib.sha256(f"{owner}\n".encode() + canonical(response)).hexdigest()


@dataclass(frozen=True)
class Record:
    id: str
    response_key: str
    response_id: str | None
    request_id: str
    received_at: str
    questionnaire: str
    policy: str
    policy_version: str
    evaluated_at: str
    outcome: str
    response: dict[str, Any]
    determination: dict[str, Any]
    claim_response: dict[str, Any]
    member: str | None = None
    owner: str | None = None  # who submitted it: client/{id} or organization/{id}
    # automatic (the scorer decided), awaiting-review, or reviewed
    state: str = "automatic"
    priority: str = "standard"  # or expedited
    decided_at: str | None = None  # when the current decision was made (None: not yet)
    reviewer: str | None = None  # who decided, when a pharmacist did
    # the scorer's determination when it is (or was) only a recommendation
    recommendation: dict[str, Any] | None = None
    # the response as sent, when it answered an earlier version of its form:
    # ``response`` is then its answers carried over to the version that decided it
    submitted: dict[str, Any] | None = None
    # the short reference read out on the phone (review/reference.py), given by
    # the store when the record is saved
    reference: str | None = None
    # the patient's name and member id as searched (casefolded), set on saving
    search_patient: str | None = None
    search_member_id: str | None = None
    # when the office last replied to a pend of it (None: never): the
    # decision deadline runs again from it, and the queue orders by it
    replied_at: str | None = None

    def row(self) -> tuple[Any, ...]:
        return tuple(
            dump_text(getattr(self, c)) if c in JSON_COLUMNS else getattr(self, c) for c in COLUMNS
        )

    @classmethod
    def from_row(cls, row: Any) -> Record:
        values = dict(zip(COLUMNS, row, strict=True))
        for column in JSON_COLUMNS:
            values[column] = json.loads(values[column]) if values[column] is not None else None
        # records of releases before review: decided by the scorer when received
        values["state"] = values["state"] or "automatic"
        values["priority"] = values["priority"] or "standard"
        if values["decided_at"] is None and values["state"] == "automatic":
            values["decided_at"] = values["received_at"]
        return cls(**values)


@dataclass(frozen=True)
class Approval:
    """An approval this plan gave a member: which record, under which Questionnaire."""

    id: str
    questionnaire: str
    evaluated_at: str


@dataclass(frozen=True)
class AuditEntry:
    """One read of a member's data: who read what, when, in which request."""

    id: str
    at: str
    request_id: str
    who: str
    what: str
    member: str | None


@dataclass(frozen=True)
class ErrorReport:
    """A DTR client's report of a problem with one of our Questionnaires."""

    id: str
    received_at: str
    request_id: str
    questionnaire: str
    outcome: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (
            self.id, self.received_at, self.request_id, self.questionnaire, json.dumps(self.outcome)
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: Any) -> ErrorReport:
        values = dict(zip(ERROR_COLUMNS, row, strict=True))
        values["outcome"] = json.loads(values["outcome"])
        return cls(**values)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _versions_of(url: str) -> str:
    """A LIKE pattern for every ``url|version`` of a url."""
    escaped = url.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "|%"


@dataclass
class ImpactPart:
    """A part of an impact run claimed by one process (:meth:`Store.impact_claim`)."""

    run: str
    part: int
    first: str  # its first record id
    last: str  # its last record id
    worker: str  # who claimed it
    kept: tuple[dict[str, Any], list[tuple[str, str]]] | None = None

    def keep(self, report: dict[str, Any], rows: list[tuple[str, str]]) -> None:
        """The part re-scored: its report and each request's (record id,
        CSV row), written with the part marked done when the claim ends."""
        self.kept = (report, rows)


@dataclass(frozen=True)
class ImpactRun:
    """An impact run as the pharmacist's page lists it: finished (its report
    kept, :meth:`Store.impact_finish`) or in progress (parts kept of parts
    planned)."""

    id: str  # the report's id once finished, else the run's
    policy: str
    new_version: str
    started_at: str
    finished_at: str | None = None
    finished_by: str | None = None  # the process that wrote the report (host:pid)
    old_versions: tuple[str, ...] = ()
    total: int = 0  # requests re-scored (a finished run)
    changed: int = 0  # of them, those decided differently
    done: int = 0  # parts kept (a run in progress)
    planned: int = 0

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class _SQLiteDatabase:
    """A SQLite connection as the store, the migrations and the casework use it."""

    mark = "?"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(sql, params).fetchall())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def tables(self) -> set[str]:
        rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(row[0]) for row in rows}

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self.execute(f"PRAGMA table_info({table})")}


class _PostgresDatabase:
    """A PostgreSQL connection as the store, the migrations and the casework
    use it; each of its transactions holds an advisory lock, so instances
    starting together migrate once."""

    mark = "%s"
    LOCK = 7_402_311

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.connection.transaction():
            self.connection.execute("SELECT pg_advisory_xact_lock(%s)", (self.LOCK,))
            yield

    def tables(self) -> set[str]:
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {str(row[0]) for row in rows}

    def columns(self, table: str) -> set[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return {str(row[0]) for row in rows}


class Connections(Protocol):
    """The database adapter under the store: how to get a connection, and
    how a write of a record is made one at a time."""

    def reading(self) -> AbstractContextManager[Database]:
        """A connection; each statement commits on its own."""
        ...

    def writing(self) -> AbstractContextManager[Database]:
        """A connection inside one transaction, committed on leaving."""
        ...

    def close(self) -> None: ...


def _use_wal(db: sqlite3.Connection, patience: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so). On a new file this takes a lock
    SQLite does not wait for (its busy timeout does not apply), so a second
    instance starting beside the first gets "database is locked": it retries
    for as long as the busy timeout, and then finds the file in WAL mode."""
    deadline = time.monotonic() + patience
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SQLiteConnections:
    """One file, WAL journal; one connection per server thread, kept open.

    Opening a connection per operation cost 1.3 ms of a 3.7 ms request: the
    last close of a WAL database checkpoints it. A committed transaction is
    on disk all the same (``synchronous = FULL``).

    One writer at a time, across threads and processes: a thread first
    queues on a lock of its process, then on an exclusive ``flock`` of a file
    beside the database (``{file}-writer``), which the kernel hands to the
    next waiting process the moment it is released. SQLite's own wait for
    its write lock sleeps and retries instead: two service processes on one
    file measured 219 determinations/s with a p99 of 0.5-0.9 s that way, the
    waiting process asleep while the lock sat free."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # one writer at a time within the process, queued on a lock: SQLite's
        # own wait for its write lock sleeps and retries, which under many
        # threads leaves some waiting seconds while others go ahead
        self._writing = threading.Lock()
        # the lock file, opened once per process: a flock belongs to the open
        # file, so the threads of a process share it (their own lock orders them)
        self._writer: int | None = None
        if self.path != ":memory:":
            self._writer = os.open(f"{self.path}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        _use_wal(self._connection())

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # used by one thread only; closed by close() from whichever thread stops the service
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA synchronous = FULL")  # committed means on disk
            self._local.db = db
            with self._lock:
                self._opened.append(db)
        return db

    @contextmanager
    def reading(self) -> Iterator[Database]:
        yield _SQLiteDatabase(self._connection())

    @contextmanager
    def writing(self) -> Iterator[Database]:
        db = _SQLiteDatabase(self._connection())
        with self._writing, self._writer_lock(), db.transaction():
            yield db

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if self._writer is None:
            yield  # an in-memory database lives in this process only
            return
        fcntl.flock(self._writer, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._writer, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None
        self._local = threading.local()


class PostgresConnections:
    """A PostgreSQL database (``pip install 'dtr-pa[postgres]'``) through a
    connection pool shared by the server's worker threads."""

    def __init__(self, url: str, max_connections: int = 10) -> None:
        # optional dependencies, imported only when a PostgreSQL URL is configured
        from psycopg_pool import ConnectionPool

        self.url = url
        self.pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=True)

    @contextmanager
    def reading(self) -> Iterator[Database]:
        # the pool commits what the connection did when it is given back
        with self.pool.connection() as db:
            yield _PostgresDatabase(db)

    @contextmanager
    def writing(self) -> Iterator[Database]:
        # a plain transaction: PostgreSQL orders concurrent writers itself
        with self.pool.connection() as db, db.transaction():
            yield _PostgresDatabase(db)

    def close(self) -> None:
        self.pool.close()


def _with_references(db: Database, records: list[Record]) -> list[Record]:
    """Each record with its short reference: the first of its candidates no
    stored record and no record before it here has. The first candidates are
    looked up in one query; one taken (rare: a reference has 45 bits) sends that
    record through its further candidates one query each."""
    m = db.mark
    firsts = [next(candidates(record.id)) for record in records]
    taken = {
        str(found[0])
        for found in db.execute(
            f"SELECT reference FROM determinations"
            f" WHERE reference IN ({', '.join([m] * len(firsts))})",
            tuple(firsts),
        )
    }
    chosen = []
    for record, first in zip(records, firsts, strict=True):
        reference = first
        if first in taken:
            reference = next(
                r
                for r in candidates(record.id)
                if r not in taken
                and not db.execute(f"SELECT 1 FROM determinations WHERE reference = {m}", (r,))
            )
        taken.add(reference)
        chosen.append(replace(record, reference=reference))
    return chosen


class Store:
    """The records, error reports and audit trail, in SQL both databases read
    the same way, over a :class:`Connections` adapter (``SQLiteStore``,
    ``PostgresStore``)."""

    def __init__(self, connections: Connections) -> None:
        self.connections = connections
        with connections.reading() as db:
            self.migrated = migrate(db)
        # the service's saves, written a group at a time by one thread
        self.saves = GroupCommit(self)

    def save(self, record: Record) -> tuple[Record, bool]:
        """Store ``record``; returns the stored record and whether it is new
        (an identical response already stored is returned instead). The
        record gets its short reference, the first of its candidates no
        other record has, and the text it is searched by."""
        return self.save_all([record])[0]

    def save_all(self, records: Sequence[Record]) -> list[tuple[Record, bool]]:
        """Store ``records`` in one transaction, each as :meth:`save` does, in
        order: a response sent twice among them is stored once, the second
        finding the first. A handful of statements whatever their number (the
        free references in one query, the rows in one multi-row INSERT), so
        a group costs one commit and one wait for the write lock."""
        if not records:
            return []
        prepared = [
            replace(record, search_patient=patient, search_member_id=member_id)
            for record in records
            for patient, member_id in (search_text(record.response),)
        ]
        # the rows' JSON written before the write lock is taken, which every
        # process waits for: only the reference is filled in under it
        rows = {record.id: list(record.row()) for record in prepared}
        with self.connections.writing() as db:
            m = db.mark
            chosen = _with_references(db, prepared)
            first_of_key: dict[str, Record] = {}
            for record in chosen:
                first_of_key.setdefault(record.response_key, record)
                rows[record.id][_REFERENCE] = record.reference
            fresh = list(first_of_key.values())
            row = f"({', '.join([m] * len(COLUMNS))})"
            inserted = {
                found[0]
                for found in db.execute(
                    f"INSERT INTO determinations ({', '.join(COLUMNS)})"
                    f" VALUES {', '.join([row] * len(fresh))}"
                    " ON CONFLICT (response_key) DO NOTHING RETURNING id",
                    tuple(value for record in fresh for value in rows[record.id]),
                )
            }
            stored: dict[str, Record] = {}
            if len(inserted) < len(chosen):
                keys = list({r.response_key for r in chosen if r.id not in inserted})
                for found in db.execute(
                    f"SELECT {', '.join(COLUMNS)} FROM determinations"
                    f" WHERE response_key IN ({', '.join([m] * len(keys))})",
                    tuple(keys),
                ):
                    existing = Record.from_row(found)
                    stored[existing.response_key] = existing
        return [
            (record, True) if record.id in inserted else (stored[record.response_key], False)
            for record in chosen
        ]

    def get(self, record_id: str) -> Record | None:
        with self.connections.reading() as db:
            rows = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE id = {db.mark}",
                (record_id,),
            )
        return Record.from_row(rows[0]) if rows else None

    def approvals(self, member: str, policy: str) -> list[Approval]:
        """The approvals stored for this member under this policy, oldest first."""
        with self.connections.reading() as db:
            m = db.mark
            rows = db.execute(
                f"SELECT {HISTORY} FROM determinations WHERE member = {m} AND policy = {m}"
                " AND outcome = 'approved' ORDER BY evaluated_at, received_at",
                (member, policy),
            )
        return [Approval(*row) for row in rows]

    def approved_terms(
        self, member: str, policy: str, received_by: str
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """This member's approvals under this policy of requests received by
        ``received_by``, each (record id, questionnaire, determination JSON):
        its authorization term is in it."""
        with self.connections.reading() as db:
            m = db.mark
            rows = db.execute(
                "SELECT id, questionnaire, determination FROM determinations"
                f" WHERE member = {m} AND policy = {m} AND outcome = 'approved'"
                f" AND received_at <= {m}",
                (member, policy, received_by),
            )
        return [(str(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

    def log_error(self, report: ErrorReport) -> None:
        with self.connections.writing() as db:
            db.execute(
                f"INSERT INTO questionnaire_errors ({', '.join(ERROR_COLUMNS)})"
                f" VALUES ({', '.join([db.mark] * len(ERROR_COLUMNS))})",
                report.row(),
            )

    def errors(self, questionnaire: str | None = None, limit: int = 100) -> list[ErrorReport]:
        """Error reports, newest first (of one Questionnaire url or url|version)."""
        with self.connections.reading() as db:
            m = db.mark
            query = f"SELECT {', '.join(ERROR_COLUMNS)} FROM questionnaire_errors"
            args: tuple[Any, ...] = ()
            if questionnaire:
                query += f" WHERE questionnaire = {m} OR questionnaire LIKE {m} ESCAPE '\\'"
                args = (questionnaire, _versions_of(questionnaire))
            query += f" ORDER BY received_at DESC, id DESC LIMIT {m}"
            rows = db.execute(query, (*args, limit))
        return [ErrorReport.from_row(row) for row in rows]

    def audit(self, entry: AuditEntry) -> None:
        with self.connections.writing() as db:
            db.execute(
                f"INSERT INTO audit_reads ({', '.join(AUDIT_COLUMNS)})"
                f" VALUES ({', '.join([db.mark] * len(AUDIT_COLUMNS))})",
                tuple(getattr(entry, c) for c in AUDIT_COLUMNS),
            )

    def audit_trail(self, member: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Reads of members' data (of one member), newest first."""
        with self.connections.reading() as db:
            m = db.mark
            query = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_reads"
            args: tuple[Any, ...] = (member,) if member else ()
            query += f" WHERE member = {m}" if member else ""
            query += f" ORDER BY at DESC, id DESC LIMIT {m}"
            rows = db.execute(query, (*args, limit))
        return [AuditEntry(*row) for row in rows]

    def count(self, policy: str | None = None) -> int:
        """The records stored (of one policy)."""
        with self.connections.reading() as db:
            if policy is None:
                rows = db.execute("SELECT count(*) FROM determinations")
            else:
                rows = db.execute(
                    f"SELECT count(*) FROM determinations WHERE policy = {db.mark}", (policy,)
                )
        return int(rows[0][0])

    # --- the progress of an impact report (dtr impact) --------------------------------------

    def impact_plan(self, run: str, policy: str, size: int, version: str = "") -> int:
        """A run cut into parts of at most ``size`` consecutive records of
        ``policy`` (by id), once: the first process to begin the run plans
        it, and every later one (resuming, or another machine joining) finds
        the same parts. ``version``: the version it re-scores under. The
        number of parts (0: no record)."""
        with self.connections.writing() as db:
            m = db.mark
            planner = db.execute(
                "INSERT INTO impact_runs (id, policy, started_at, new_version) VALUES"
                f" ({m}, {m}, {m}, {m}) ON CONFLICT (id) DO NOTHING RETURNING id",
                (run, policy, _now(), version),
            )
            if planner:
                ids = (
                    str(row[0])
                    for rows in self._ids_of(db, policy, max(1, size) * 20)
                    for row in rows
                )
                part, first, last, held = 0, "", "", 0
                for record in ids:
                    first = first or record
                    last, held = record, held + 1
                    if held == size:
                        self._plan_part(db, run, part, first, last)
                        part, first, held = part + 1, "", 0
                if held:
                    self._plan_part(db, run, part, first, last)
            rows = db.execute(f"SELECT count(*) FROM impact_parts WHERE run = {m}", (run,))
        return int(rows[0][0])

    @staticmethod
    def _ids_of(db: Database, policy: str, batch: int) -> Iterator[list[Any]]:
        """A policy's record ids in order, a batch per query (inside the
        planner's transaction)."""
        m, after = db.mark, ""
        while True:
            rows = db.execute(
                f"SELECT id FROM determinations WHERE policy = {m} AND id > {m}"
                f" ORDER BY id LIMIT {m}",
                (policy, after, batch),
            )
            if not rows:
                return
            yield rows
            after = str(rows[-1][0])

    @staticmethod
    def _plan_part(db: Database, run: str, part: int, first: str, last: str) -> None:
        m = db.mark
        db.execute(
            "INSERT INTO impact_parts (run, part, first_record, last_record)"
            f" VALUES ({m}, {m}, {m}, {m})",
            (run, part, first, last),
        )

    @contextmanager
    def impact_claim(self, run: str, worker: str) -> Iterator[ImpactPart | None]:
        """The first part of a run no one has done or holds (None: none
        left to claim). On PostgreSQL the part is claimed ``FOR UPDATE SKIP
        LOCKED`` in a transaction held while it is re-scored, so processes on
        several machines each take a different part, and a part whose process
        dies is given back by the database when its connection drops. On
        SQLite, one process writes: the part is kept in a short transaction
        once re-scored. Either way, :meth:`ImpactPart.keep` writes the part's
        rows and report with the part marked done, all at once or not at all."""
        locking = isinstance(self.connections, PostgresConnections)
        holder = self.connections.writing() if locking else self.connections.reading()
        with holder as db:
            m = db.mark
            rows = db.execute(
                "SELECT part, first_record, last_record FROM impact_parts"
                f" WHERE run = {m} AND done_at IS NULL ORDER BY part LIMIT 1"
                + (" FOR UPDATE SKIP LOCKED" if locking else ""),
                (run,),
            )
            if not rows:
                yield None
                return
            part = ImpactPart(run, int(rows[0][0]), str(rows[0][1]), str(rows[0][2]), worker)
            yield part
            if part.kept is None:
                return
            report, lines = part.kept
            if locking:
                self._keep_part(db, part, report, lines)
            else:
                with self.connections.writing() as writer:
                    self._keep_part(writer, part, report, lines)

    @staticmethod
    def _keep_part(
        db: Database, part: ImpactPart, report: dict[str, Any], lines: list[tuple[str, str]]
    ) -> None:
        m = db.mark
        for record, row in lines:
            db.execute(
                f"INSERT INTO impact_rows (run, record, row) VALUES ({m}, {m}, {m})"
                " ON CONFLICT (run, record) DO UPDATE SET row = excluded.row",
                (part.run, record, row),
            )
        db.execute(
            f"UPDATE impact_parts SET done_at = {m}, done_by = {m}, report = {m}"
            f" WHERE run = {m} AND part = {m}",
            (_now(), part.worker, json.dumps(report), part.run, part.part),
        )

    def impact_records(self, policy: str, part: ImpactPart) -> list[Record]:
        """The records of a part, in id order."""
        with self.connections.reading() as db:
            m = db.mark
            rows = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE policy = {m}"
                f" AND id >= {m} AND id <= {m} ORDER BY id",
                (policy, part.first, part.last),
            )
        return [Record.from_row(row) for row in rows]

    def impact_state(self, run: str) -> tuple[int, int]:
        """(parts done, parts) of a run."""
        with self.connections.reading() as db:
            rows = db.execute(
                f"SELECT count(done_at), count(*) FROM impact_parts WHERE run = {db.mark}",
                (run,),
            )
        return int(rows[0][0]), int(rows[0][1])

    def impact_reports(self, run: str) -> Iterator[dict[str, Any]]:
        """The reports of a run's parts done, in part order, read a batch at a time."""
        query = (
            "SELECT part, report FROM impact_parts WHERE run = {m} AND part > {m}"
            " AND done_at IS NOT NULL ORDER BY part LIMIT {m}"
        )
        for rows in self._pages(query, run, -1, 200, key=0):
            yield from (json.loads(row[1]) for row in rows)

    def impact_finisher(self, run: str, worker: str) -> bool:
        """Whether ``worker`` is the one process that writes the run's report
        and drops its progress: the first to ask once every part is done."""
        with self.connections.writing() as db:
            m = db.mark
            rows = db.execute(
                f"UPDATE impact_runs SET finished_by = {m} WHERE id = {m}"
                " AND finished_by IS NULL AND NOT EXISTS (SELECT 1 FROM impact_parts"
                f" WHERE run = {m} AND done_at IS NULL) RETURNING id",
                (worker, run, run),
            )
        return bool(rows)

    def impact_rows(self, run: str, batch: int = 1000) -> Iterator[str]:
        """A run's rows (a finished run's: by its report's id), in record
        order, read a batch at a time."""
        query = (
            "SELECT record, row FROM impact_rows WHERE run = {m} AND record > {m}"
            " ORDER BY record LIMIT {m}"
        )
        for rows in self._pages(query, run, "", batch, key=0):
            yield from (str(row[1]) for row in rows)

    def _pages(
        self, query: str, owner: str, after: str | int, batch: int, key: int
    ) -> Iterator[list[Any]]:
        """The rows of ``query`` (``{m}`` its placeholders: the owner, the key
        to start after, the batch size) one batch at a time, each batch one
        query after the last key seen (column ``key`` of a row): no more than
        a batch in memory, no cursor open between batches."""
        while True:
            with self.connections.reading() as db:
                rows = db.execute(query.format(m=db.mark), (owner, after, batch))
            if not rows:
                return
            yield list(rows)
            after = rows[-1][key]

    def impact_finish(self, run: str, report: dict[str, Any]) -> str:
        """A finished run's report (:meth:`qpackage.impact.Impact.to_json`)
        kept under a new id, with who finished it and when, and its rows
        moved under that id; its progress dropped, so the same command given
        again starts afresh. All at once. The report's id."""
        kept = uuid.uuid4().hex
        with self.connections.writing() as db:
            m = db.mark
            policy, started, finisher, version = db.execute(
                f"SELECT policy, started_at, finished_by, new_version FROM impact_runs WHERE id = {m}",
                (run,),
            )[0]
            db.execute(
                "INSERT INTO impact_reports (id, run, policy, new_version, old_versions,"
                " started_at, finished_at, finished_by, total, changed, report)"
                f" VALUES ({', '.join([m] * 11)})",
                (kept, run, policy, report.get("newVersion") or version or "",
                 json.dumps(sorted(report.get("oldVersions") or [])), started, _now(),
                 finisher or "", int(report["total"]), int(report["changed"]),
                 json.dumps(report)),
            )  # fmt: skip
            db.execute(f"UPDATE impact_rows SET run = {m} WHERE run = {m}", (kept, run))
            db.execute(f"DELETE FROM impact_parts WHERE run = {m}", (run,))
            db.execute(f"DELETE FROM impact_runs WHERE id = {m}", (run,))
        return kept

    _REPORT = (
        "id, policy, new_version, started_at, finished_at, finished_by, old_versions, total,"
        " changed"
    )

    @staticmethod
    def _finished(row: tuple[Any, ...]) -> ImpactRun:
        rid, policy, version, started, finished, finisher, old, total, changed = row
        return ImpactRun(
            id=str(rid), policy=str(policy), new_version=str(version), started_at=str(started),
            finished_at=str(finished), finished_by=str(finisher),
            old_versions=tuple(json.loads(old)), total=int(total), changed=int(changed),
        )  # fmt: skip

    def impact_runs(self) -> list[ImpactRun]:
        """Every impact run the store holds: those in progress (latest
        started first), then the finished ones' reports (latest first)."""
        with self.connections.reading() as db:
            going = db.execute(
                "SELECT r.id, r.policy, r.new_version, r.started_at,"
                " count(p.done_at), count(p.part) FROM impact_runs r"
                " LEFT JOIN impact_parts p ON p.run = r.id"
                " GROUP BY r.id, r.policy, r.new_version, r.started_at"
                " ORDER BY r.started_at DESC, r.id"
            )
            finished = db.execute(
                f"SELECT {self._REPORT} FROM impact_reports ORDER BY finished_at DESC, id"
            )
        return [
            ImpactRun(id=str(rid), policy=str(policy), new_version=str(version or ""),
                      started_at=str(started), done=int(done), planned=int(planned))
            for rid, policy, version, started, done, planned in going
        ] + [self._finished(row) for row in finished]  # fmt: skip

    def impact_report(self, report: str) -> tuple[ImpactRun, dict[str, Any]] | None:
        """A finished run's report: the run and the report's JSON (None:
        no report of that id). Its rows: :meth:`impact_rows` by its id."""
        with self.connections.reading() as db:
            rows = db.execute(
                f"SELECT {self._REPORT}, report FROM impact_reports WHERE id = {db.mark}",
                (report,),
            )
        if not rows:
            return None
        return self._finished(rows[0][:-1]), json.loads(rows[0][-1])

    def database(self) -> AbstractContextManager[Database]:
        """A connection as plain SQL sees it (the accounts and the casework use it)."""
        return self.connections.reading()

    def close(self) -> None:
        self.saves.close()
        self.connections.close()


Saved = tuple[Record, bool]


@dataclass(frozen=True)
class _Waiter:
    """Who waits for a queued save: a thread's future, or a coroutine's
    future on its event loop (``loop``)."""

    future: Future[Saved] | asyncio.Future[Saved]
    loop: asyncio.AbstractEventLoop | None = None


class GroupCommit:
    """One writer thread for a process's saves: a save queued from any thread
    or coroutine waits for the writer, which takes every save queued
    meanwhile (up to ``most``) and writes them in one transaction
    (:meth:`Store.save_all`).

    Under load the commit, its fsync and the wait for the write lock (shared
    by every process on a SQLite file) are paid once a group instead of once
    a request, and no request thread holds the lock: the service's event
    loop goes on scoring while the writer waits. The coroutines of one event
    loop are told their group's results in one call into the loop (a
    wake-up of the loop each was 7% of a determination's time). When a
    group's transaction fails, its records are saved one by one, so only the
    one at fault fails; a fault of the writer's own fails its group's waiters
    with the error (logged by its type alone), and the writer goes on. A save
    is written even if its caller stopped waiting: nothing accepted is
    dropped."""

    def __init__(self, store: Store, most: int = 64) -> None:
        self._store = store
        self._most = most
        self._queue: queue.SimpleQueue[tuple[Record, _Waiter] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, record: Record) -> Future[Saved]:
        """Queue ``record``; the future gives what :meth:`Store.save` returns."""
        future: Future[Saved] = Future()
        self._put(record, _Waiter(future))
        return future

    async def save(self, record: Record) -> Saved:
        """:meth:`Store.save` for a coroutine: queued, awaited on its loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Saved] = loop.create_future()
        self._put(record, _Waiter(future, loop))
        return await future

    def _put(self, record: Record, waiter: _Waiter) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._thread is None:
                # started on first use: a store only read (the CLI) has none
                self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
                self._thread.start()
            self._queue.put((record, waiter))

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            last = False
            while len(group) < self._most:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                    break
                group.append(more)
            try:
                self._write(group)
            except Exception as exc:  # a fault of the writer's own: no waiter is left hanging
                # the type and place only: a message may quote a record
                log.error("the store's writer failed a group: %s", type(exc).__name__)
                self._tell([(waiter, exc) for _, waiter in group])
            if last:
                return

    def _write(self, group: list[tuple[Record, _Waiter]]) -> None:
        # a thread's future it cancelled is written all the same, and told nothing
        told = [
            w.loop is not None or w.future.set_running_or_notify_cancel()  # type: ignore[union-attr]
            for _, w in group
        ]
        try:
            results: list[Saved | BaseException] = list(
                self._store.save_all([record for record, _ in group])
            )
        except Exception:
            results = []
            for record, _ in group:
                try:
                    results.append(self._store.save(record))
                except Exception as exc:
                    results.append(exc)
        self._tell(
            [(w, result) for (_, w), result, tell in zip(group, results, told, strict=True) if tell]
        )

    @staticmethod
    def _tell(told: list[tuple[_Waiter, Any]]) -> None:
        """Each waiter its result (a record, or the exception that stopped
        it): a thread's future at once, each loop's coroutines in one call."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Saved], Any]]] = {}
        for waiter, result in told:
            if waiter.loop is not None:
                by_loop.setdefault(waiter.loop, []).append((waiter.future, result))  # type: ignore[arg-type]
            elif not waiter.future.done():
                _settle(waiter.future, result)
        for loop, settled in by_loop.items():
            # a loop that has closed has nobody waiting any more
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join()


def _settle(future: Future[Saved] | asyncio.Future[Saved], result: Any) -> None:
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _settle_all(settled: list[tuple[asyncio.Future[Saved], Any]]) -> None:
    """On the waiters' loop: each told its result (a cancelled one nothing)."""
    for future, result in settled:
        if not future.done():
            _settle(future, result)


class SQLiteStore(Store):
    """The store in one SQLite file (or ``:memory:``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(SQLiteConnections(path))


class PostgresStore(Store):
    """The store on PostgreSQL, shared by several service instances."""

    def __init__(self, url: str, max_connections: int = 10) -> None:
        super().__init__(PostgresConnections(url, max_connections))


def open_store(database: str) -> Store:
    """A store for a database setting: a file path (SQLite) or a PostgreSQL URL."""
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresStore(database)
    return SQLiteStore(database.removeprefix("sqlite:///"))
