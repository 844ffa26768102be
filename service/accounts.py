"""The store's side of who may call: registered backend clients, the
assertion ids they have used, portal users, their sessions, and the
secret access tokens are signed with.

Plain SQL over the store's connection (``Store.database``), the same on
SQLite and PostgreSQL. A session cookie and a CSRF token are random
(``secrets``); the session table keeps the cookie's SHA-256 only, so a
copy of the database opens no session.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from access.passwords import hash_password, verify
from access.scopes import ROLES
from access.tokens import Client
from service.store import Store

SESSION_SECONDS = 8 * 3600
CLIENT_COLUMNS = (
    "id, name, scopes, jwks, jwks_url, organization, active, cds_hooks, cds_jku, cds_fetch"
)
USERNAME = re.compile(r"[A-Za-z0-9._@-]+")  # a working day; signing out ends it sooner


@dataclass(frozen=True)
class User:
    username: str
    name: str
    role: str
    organization: str | None
    active: bool = True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- the service's own secret -------------------------------------------------

    def secret(self, name: str = "access-token") -> str:
        """The named secret, made on first use; every instance reads the same."""
        with self.store.database() as db:
            m = db.mark
            db.execute(
                f"INSERT INTO service_secrets (name, secret, created_at) VALUES ({m}, {m}, {m})"
                " ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_urlsafe(48), _now()),
            )
            rows = db.execute(f"SELECT secret FROM service_secrets WHERE name = {m}", (name,))
        return str(rows[0][0])

    # --- backend clients ------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        with self.store.database() as db:
            m = db.mark
            if db.execute(f"SELECT 1 FROM clients WHERE id = {m}", (client.id,)):
                raise ValueError(f"a client {client.id!r} is already registered")
            db.execute(
                "INSERT INTO clients (id, name, scopes, jwks, jwks_url, organization, active,"
                " created_at, cds_hooks, cds_jku, cds_fetch)"
                f" VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})",
                (
                    client.id, client.name, " ".join(client.scopes),
                    json.dumps(client.jwks) if client.jwks is not None else None,
                    client.jwks_url, client.organization, int(client.active), _now(),
                    int(client.cds_hooks), json.dumps(list(client.jku)) if client.jku else None,
                    int(client.fetch_prefetch),
                ),
            )  # fmt: skip

    def client(self, client_id: str) -> Client | None:
        with self.store.database() as db:
            rows = db.execute(
                f"SELECT {CLIENT_COLUMNS} FROM clients WHERE id = {db.mark}",
                (client_id,),
            )
        return _client(rows[0]) if rows else None

    def clients(self) -> list[Client]:
        with self.store.database() as db:
            rows = db.execute(f"SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id")
        return [_client(row) for row in rows]

    def set_client_active(self, client_id: str, active: bool) -> bool:
        with self.store.database() as db:
            m = db.mark
            found = db.execute(f"SELECT 1 FROM clients WHERE id = {m}", (client_id,))
            db.execute(f"UPDATE clients SET active = {m} WHERE id = {m}", (int(active), client_id))
        return bool(found)

    def first_use(self, client_id: str, jti: str, expires: int, now: float) -> bool:
        """Remember an assertion id until it expires; False when already used."""
        with self.store.database() as db:
            m = db.mark
            db.execute(f"DELETE FROM client_assertions WHERE expires_at < {m}", (int(now),))
            inserted = db.execute(
                f"INSERT INTO client_assertions (client_id, jti, expires_at) VALUES ({m}, {m}, {m})"
                " ON CONFLICT (client_id, jti) DO NOTHING RETURNING jti",
                (client_id, jti, expires),
            )
        return bool(inserted)

    # --- portal users -----------------------------------------------------------------

    def add_user(
        self, username: str, name: str, role: str, organization: str | None, password: str
    ) -> User:
        user = self._insert_user(username, name, role, organization, password, first=False)
        if user is None:
            raise ValueError(f"a user {username!r} exists already")
        return user

    def add_first_user(
        self, username: str, name: str, role: str, organization: str | None, password: str
    ) -> User | None:
        """The store's first user, or None when it has users already — made
        meanwhile by another instance starting on the same store, perhaps."""
        return self._insert_user(username, name, role, organization, password, first=True)

    def _insert_user(
        self, username: str, name: str, role: str, organization: str | None, password: str,
        *, first: bool,
    ) -> User | None:  # fmt: skip
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(sorted(ROLES))}")
        if role == "office" and not organization:
            raise ValueError("an office user belongs to a provider organization: give one")
        if not USERNAME.fullmatch(username):
            raise ValueError("a user name is letters, digits and . _ - @")
        hashed = hash_password(password)
        with self.store.database() as db:
            m = db.mark
            # one statement, so that two callers at once cannot both pass a
            # check made apart from the insert: the loser inserts nothing (no
            # unique-key error, on SQLite or PostgreSQL). SQLite needs a WHERE
            # before ON CONFLICT in an INSERT … SELECT, hence "WHERE true"
            only_if = " WHERE NOT EXISTS (SELECT 1 FROM users)" if first else " WHERE true"
            inserted = db.execute(
                "INSERT INTO users (username, name, role, organization, password_hash, active,"
                f" created_at) SELECT {m}, {m}, {m}, {m}, {m}, 1, {m}{only_if}"
                " ON CONFLICT (username) DO NOTHING RETURNING username",
                (username, name, role, organization, hashed, _now()),
            )
        return User(username, name, role, organization) if inserted else None

    def set_user_active(self, username: str, active: bool) -> bool:
        """Enable or disable a user; False when there is none of that name.
        A disabled user's sessions end at once (every device signed out)."""
        with self.store.database() as db:
            m = db.mark
            found = db.execute(
                f"UPDATE users SET active = {m} WHERE username = {m} RETURNING username",
                (int(active), username),
            )
            if found and not active:
                db.execute(f"DELETE FROM sessions WHERE username = {m}", (username,))
        return bool(found)

    def reset_password(self, username: str, password: str) -> bool:
        """A new password; False when there is no user of that name. The
        user's sessions end (whoever knew the old one is signed out)."""
        hashed = hash_password(password)
        with self.store.database() as db:
            m = db.mark
            found = db.execute(
                f"UPDATE users SET password_hash = {m} WHERE username = {m} RETURNING username",
                (hashed, username),
            )
            if found:
                db.execute(f"DELETE FROM sessions WHERE username = {m}", (username,))
        return bool(found)

    def users(self) -> list[User]:
        with self.store.database() as db:
            rows = db.execute(
                "SELECT username, name, role, organization, active FROM users ORDER BY username"
            )
        return [User(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def user_count(self) -> int:
        with self.store.database() as db:
            return int(db.execute("SELECT count(*) FROM users")[0][0])

    def authenticate(self, username: str, password: str) -> User | None:
        with self.store.database() as db:
            rows = db.execute(
                "SELECT username, name, role, organization, active, password_hash FROM users"
                f" WHERE username = {db.mark}",
                (username,),
            )
        stored = rows[0] if rows else None
        # the hash is checked even for an unknown name: the time tells nothing
        if not verify(stored[5] if stored else None, password) or stored is None:
            return None
        user = User(stored[0], stored[1], stored[2], stored[3], bool(stored[4]))
        return user if user.active else None

    # --- sessions ----------------------------------------------------------------------

    def open_session(self, username: str, now: float) -> tuple[str, str]:
        """A new session: (the cookie's value, the session's CSRF token)."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        with self.store.database() as db:
            m = db.mark
            db.execute(f"DELETE FROM sessions WHERE expires_at < {m}", (int(now),))
            db.execute(
                "INSERT INTO sessions (id, username, csrf, created_at, expires_at)"
                f" VALUES ({m}, {m}, {m}, {m}, {m})",
                (_digest(cookie), username, csrf, _now(), int(now) + SESSION_SECONDS),
            )
        return cookie, csrf

    def session(self, cookie: str, now: float) -> tuple[User, str] | None:
        """The signed-in user and the session's CSRF token, if the session is live."""
        with self.store.database() as db:
            m = db.mark
            rows = db.execute(
                "SELECT u.username, u.name, u.role, u.organization, u.active, s.csrf"
                " FROM sessions s JOIN users u ON u.username = s.username"
                f" WHERE s.id = {m} AND s.expires_at >= {m}",
                (_digest(cookie), int(now)),
            )
        if not rows or not rows[0][4]:
            return None
        r = rows[0]
        return User(r[0], r[1], r[2], r[3], True), str(r[5])

    def close_session(self, cookie: str) -> None:
        with self.store.database() as db:
            db.execute(f"DELETE FROM sessions WHERE id = {db.mark}", (_digest(cookie),))


def _client(row: tuple[object, ...]) -> Client:
    cid, name, scopes, jwks, jwks_url, organization, active, cds, jku, fetch = row
    return Client(
        id=str(cid),
        name=str(name),
        scopes=tuple(str(scopes).split()),
        jwks=json.loads(str(jwks)) if jwks else None,
        jwks_url=str(jwks_url) if jwks_url else None,
        organization=str(organization) if organization else None,
        active=bool(active),
        cds_hooks=bool(cds),
        jku=tuple(json.loads(str(jku))) if jku else (),
        fetch_prefetch=bool(fetch),
    )
