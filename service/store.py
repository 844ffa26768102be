"""Durable storage of every accepted response and its determination.

SQLite by default (one file, WAL journal, so readers never block the one
writer), PostgreSQL when the database setting is a ``postgresql://`` URL, so
several service instances behind a load balancer share one store. A record
is committed before the reply is sent. Records are keyed by the SHA-256 of
the response's canonical JSON: resubmitting the same response (same id, same
content) finds the stored record instead of creating a second one, while a
changed response (a pended one completed later) is a new record and both
are kept.

Each record also keeps the member it is about (the response's subject, as
:func:`qpackage.member.member_key` spells it), indexed with the policy, so
the draft response of a renewal can say whether this plan approved the
drug before. Error reports of DTR clients (``$log-questionnaire-errors``)
are kept in their own table. The schema is versioned: opening a database
applies the migrations it has not had (``service/migrations.py``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from service.migrations import Database, migrate

COLUMNS = (
    "id", "response_key", "response_id", "request_id", "received_at", "questionnaire", "policy",
    "policy_version", "evaluated_at", "outcome", "response", "determination", "claim_response",
    "member", "owner", "state", "priority", "decided_at", "reviewer", "recommendation",
    "submitted",
)  # fmt: skip
HISTORY = "id, questionnaire, evaluated_at"
AUDIT_COLUMNS = ("id", "at", "request_id", "who", "what", "member")
ERROR_COLUMNS = ("id", "received_at", "request_id", "questionnaire", "outcome")
JSON_COLUMNS = {"response", "determination", "claim_response", "recommendation", "submitted"}


def response_key(response: dict[str, Any], owner: str | None) -> str:
    """The identity of a submitted response: who submitted it and its
    canonical JSON, hashed. The owner is part of it: a copy of another
    caller's response is a new record of the copier's, never a way to the
    original's determination."""
    canonical = json.dumps(response, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{owner}\n{canonical}".encode()).hexdigest()


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

    def row(self) -> tuple[Any, ...]:
        return tuple(
            json.dumps(getattr(self, c)) if c in JSON_COLUMNS else getattr(self, c) for c in COLUMNS
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


def _versions_of(url: str) -> str:
    """A LIKE pattern for every ``url|version`` of a url."""
    escaped = url.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "|%"


class _SQLiteDatabase:
    """A SQLite connection as the migrations use it."""

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
    """A PostgreSQL connection as the migrations use it; each transaction
    holds an advisory lock, so instances starting together migrate once."""

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


class Store(Protocol):
    def save(self, record: Record) -> tuple[Record, bool]:
        """Store ``record``; returns the stored record and whether it is new
        (an identical response already stored is returned instead)."""
        ...

    def get(self, record_id: str) -> Record | None: ...

    def approvals(self, member: str, policy: str) -> list[Approval]:
        """The approvals stored for this member under this policy, oldest first."""
        ...

    def log_error(self, report: ErrorReport) -> None: ...

    def errors(self, questionnaire: str | None = None, limit: int = 100) -> list[ErrorReport]:
        """Error reports, newest first (of one Questionnaire url or url|version)."""
        ...

    def audit(self, entry: AuditEntry) -> None: ...

    def audit_trail(self, member: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Reads of members' data (of one member), newest first."""
        ...

    def count(self) -> int: ...

    def database(self) -> AbstractContextManager[Database]:
        """A connection as plain SQL sees it (the accounts use it)."""
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


class SQLiteStore:
    """One file, WAL journal; one connection per server thread, kept open.

    Opening a connection per operation cost 1.3 ms of a 3.7 ms request: the
    last close of a WAL database checkpoints it. A committed transaction is
    on disk all the same (``synchronous = FULL``)."""

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
        with self._use() as db:
            _use_wal(db)
            self.migrated = migrate(_SQLiteDatabase(db))

    def _connect(self) -> sqlite3.Connection:
        # used by one thread only; closed by close() from whichever thread stops the service
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 30000")
        db.execute("PRAGMA synchronous = FULL")  # committed means on disk
        return db

    @contextmanager
    def _use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened on first use."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._connect()
            self._local.db = db
            with self._lock:
                self._opened.append(db)
        yield db

    def save(self, record: Record) -> tuple[Record, bool]:
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self._use() as db, self._writing:
            db.execute("BEGIN IMMEDIATE")
            try:
                existing = db.execute(
                    f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE response_key = ?",
                    (record.response_key,),
                ).fetchone()
                if existing is None:
                    db.execute(
                        f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                        record.row(),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return (record, True) if existing is None else (Record.from_row(existing), False)

    def get(self, record_id: str) -> Record | None:
        with self._use() as db:
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE id = ?", (record_id,)
            ).fetchone()
        return Record.from_row(row) if row else None

    def approvals(self, member: str, policy: str) -> list[Approval]:
        with self._use() as db:
            rows = db.execute(
                f"SELECT {HISTORY} FROM determinations WHERE member = ? AND policy = ?"
                " AND outcome = 'approved' ORDER BY evaluated_at, received_at",
                (member, policy),
            ).fetchall()
        return [Approval(*row) for row in rows]

    def log_error(self, report: ErrorReport) -> None:
        with self._use() as db:
            db.execute(
                f"INSERT INTO questionnaire_errors ({', '.join(ERROR_COLUMNS)})"
                " VALUES (?, ?, ?, ?, ?)",
                report.row(),
            )

    def errors(self, questionnaire: str | None = None, limit: int = 100) -> list[ErrorReport]:
        query = f"SELECT {', '.join(ERROR_COLUMNS)} FROM questionnaire_errors"
        args: tuple[Any, ...] = ()
        if questionnaire:
            query += " WHERE questionnaire = ? OR questionnaire LIKE ? ESCAPE '\\'"
            args = (questionnaire, _versions_of(questionnaire))
        query += " ORDER BY received_at DESC, id DESC LIMIT ?"
        with self._use() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [ErrorReport.from_row(row) for row in rows]

    def audit(self, entry: AuditEntry) -> None:
        with self._use() as db:
            db.execute(
                f"INSERT INTO audit_reads ({', '.join(AUDIT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
                tuple(getattr(entry, c) for c in AUDIT_COLUMNS),
            )

    def audit_trail(self, member: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_reads"
        args: tuple[Any, ...] = (member,) if member else ()
        query += " WHERE member = ?" if member else ""
        query += " ORDER BY at DESC, id DESC LIMIT ?"
        with self._use() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [AuditEntry(*row) for row in rows]

    def count(self) -> int:
        with self._use() as db:
            return int(db.execute("SELECT count(*) FROM determinations").fetchone()[0])

    @contextmanager
    def database(self) -> Iterator[Database]:
        with self._use() as db:
            yield _SQLiteDatabase(db)

    def close(self) -> None:
        with self._lock:
            for db in self._opened:
                db.close()
            self._opened.clear()
        self._local = threading.local()


class PostgresStore:
    """The same store on PostgreSQL (``pip install 'dtr-pa[postgres]'``), with
    a connection pool shared by the server's worker threads."""

    def __init__(self, url: str, max_connections: int = 10) -> None:
        # optional dependencies, imported only when a PostgreSQL URL is configured
        from psycopg_pool import ConnectionPool

        self.url = url
        self.pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=True)
        with self.pool.connection() as db:
            self.migrated = migrate(_PostgresDatabase(db))

    def save(self, record: Record) -> tuple[Record, bool]:
        placeholders = ", ".join("%s" for _ in COLUMNS)
        with self.pool.connection() as db:
            inserted = db.execute(
                f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({placeholders})"
                " ON CONFLICT (response_key) DO NOTHING RETURNING id",
                record.row(),
            ).fetchone()
            if inserted is not None:
                return record, True
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE response_key = %s",
                (record.response_key,),
            ).fetchone()
        return Record.from_row(row), False

    def get(self, record_id: str) -> Record | None:
        with self.pool.connection() as db:
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM determinations WHERE id = %s", (record_id,)
            ).fetchone()
        return Record.from_row(row) if row else None

    def approvals(self, member: str, policy: str) -> list[Approval]:
        with self.pool.connection() as db:
            rows = db.execute(
                f"SELECT {HISTORY} FROM determinations WHERE member = %s AND policy = %s"
                " AND outcome = 'approved' ORDER BY evaluated_at, received_at",
                (member, policy),
            ).fetchall()
        return [Approval(*row) for row in rows]

    def log_error(self, report: ErrorReport) -> None:
        with self.pool.connection() as db:
            db.execute(
                f"INSERT INTO questionnaire_errors ({', '.join(ERROR_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s)",
                report.row(),
            )

    def errors(self, questionnaire: str | None = None, limit: int = 100) -> list[ErrorReport]:
        query = f"SELECT {', '.join(ERROR_COLUMNS)} FROM questionnaire_errors"
        args: tuple[Any, ...] = ()
        if questionnaire:
            query += " WHERE questionnaire = %s OR questionnaire LIKE %s ESCAPE '\\'"
            args = (questionnaire, _versions_of(questionnaire))
        query += " ORDER BY received_at DESC, id DESC LIMIT %s"
        with self.pool.connection() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [ErrorReport.from_row(row) for row in rows]

    def audit(self, entry: AuditEntry) -> None:
        with self.pool.connection() as db:
            db.execute(
                f"INSERT INTO audit_reads ({', '.join(AUDIT_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                tuple(getattr(entry, c) for c in AUDIT_COLUMNS),
            )

    def audit_trail(self, member: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_reads"
        args: tuple[Any, ...] = (member,) if member else ()
        query += " WHERE member = %s" if member else ""
        query += " ORDER BY at DESC, id DESC LIMIT %s"
        with self.pool.connection() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [AuditEntry(*row) for row in rows]

    def count(self) -> int:
        with self.pool.connection() as db:
            row = db.execute("SELECT count(*) FROM determinations").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def database(self) -> Iterator[Database]:
        with self.pool.connection() as db:
            yield _PostgresDatabase(db)

    def close(self) -> None:
        self.pool.close()


def open_store(database: str) -> Store:
    """A store for a database setting: a file path (SQLite) or a PostgreSQL URL."""
    if database.startswith(("postgresql://", "postgres://")):
        return PostgresStore(database)
    return SQLiteStore(database.removeprefix("sqlite:///"))
