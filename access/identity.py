"""Who is calling: a registered backend client (SMART Backend Services) or
a signed-in person, with the scopes they hold and the records they own.

A record belongs to whoever submitted it: ``client/{id}`` for a system,
``organization/{id}`` for an office (everyone in a practice sees the
practice's requests). A payer pharmacist is the payer's own staff and
reads every record, those stored before callers authenticated included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from access.scopes import PAYER_ROLES, ROLES, Scope, parse_all, permits


@dataclass(frozen=True)
class Identity:
    kind: str  # "client" or "user"
    id: str  # the client id or the user name
    name: str
    scopes: tuple[Scope, ...]
    role: str | None = None
    organization: str | None = None
    # the session's CSRF token, for a person signed in to the portal
    csrf: str | None = field(default=None, repr=False)

    @classmethod
    def client(cls, client_id: str, name: str, scope: str) -> Identity:
        return cls("client", client_id, name, tuple(parse_all(scope)))

    @classmethod
    def user(
        cls, username: str, name: str, role: str, organization: str | None, csrf: str
    ) -> Identity:
        scopes = tuple(parse_all(" ".join(ROLES.get(role, ()))))
        return cls("user", username, name, scopes, role, organization, csrf)

    @property
    def context(self) -> str:
        return "system" if self.kind == "client" else "user"

    @property
    def owner(self) -> str | None:
        """The owner of what this caller submits (None: may not submit)."""
        if self.kind == "client":
            return f"client/{self.id}"
        return f"organization/{self.organization}" if self.organization else None

    @property
    def key(self) -> str:
        """This caller, for the rate limit."""
        return f"{self.kind}/{self.id}"

    def describe(self) -> str:
        """For the audit record: who, as the payer will read it."""
        if self.kind == "client":
            return f"client {self.id} ({self.name})"
        where = f", {self.owner}" if self.organization else ""
        return f"user {self.id} ({self.role}{where})"

    @property
    def payer_staff(self) -> bool:
        """A signed-in person of the payer's staff (a system never is)."""
        return self.kind == "user" and self.role in PAYER_ROLES

    def may(self, resource: str, letter: str) -> bool:
        return permits(self.scopes, self.context, resource, letter)

    def reads(self, owner: str | None) -> bool:
        """Whether this caller may see a record submitted by ``owner``."""
        if self.role == "pharmacist":
            return True
        return owner is not None and owner == self.owner
