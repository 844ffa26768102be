"""Service configuration: environment variables, overridden by ``dtr serve`` flags.

- ``DTR_HOST`` / ``DTR_PORT``: where to listen (default 127.0.0.1:8080);
- ``DTR_DB``: a SQLite file path (default ``var/dtr.sqlite3``) or a
  ``postgresql://`` URL;
- ``DTR_MAX_BODY``: the largest accepted request body in bytes (default 1 MB);
- ``DTR_MAX_RESPONSE_BODY``: the largest QuestionnaireResponse body, which may
  carry attachments of up to 10 MB each, base64 (about 1.37 times larger);
  default 16 MB;
- ``DTR_BASE_URL``: the public base URL (behind a proxy, the proxy's); by
  default ``http://{host}:{port}``. Never taken from a request's ``Host``;
- ``DTR_POLICIES``: a payer's own folder of policy files (default: the
  bundled policies);
- ``DTR_RATE_LIMIT`` / ``DTR_RATE_BURST``: requests a second per client on
  average (default 50) and at once (default 200); past them, 429;
- ``DTR_BODY_TIMEOUT``: seconds a client may pause while sending a body
  (default 30); past it, 408;
- ``DTR_HEADER_TIMEOUT``: seconds a client may take to send a request's
  headers, from connecting or from the request's first byte on a kept-alive
  connection (default 10); past it, the connection is closed (408 if the
  request was started). See ``service.server``;
- ``DTR_WORKERS``: how many processes serve (default 1; 0: one per core).
  Each keeps its own rate limiter (``service.server``);
- ``DTR_LAUNCH_URL``: the SMART launch URL of the DTR app a CRD card's link
  opens (default: the portal, ``{base}/``, where an office fills the forms).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_RATE_LIMIT = 50.0


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = "var/dtr.sqlite3"
    max_body: int = 1_000_000
    max_response_body: int = 16_000_000
    base_url: str | None = None
    policies: str | None = None
    # requests a second per client on average, and at once: off unless
    # configured; a served service (from_env) has the defaults below
    rate_limit: float | None = None
    rate_burst: int = 200
    body_timeout: float = 30.0  # seconds a client may take between body chunks
    header_timeout: float = 10.0  # seconds a client may take to send a request's headers
    workers: int = 1  # processes serving (service.server); from_env reads 0 as one per core
    dtr_launch_url: str | None = None  # the DTR app a CRD card launches

    @property
    def launch_url(self) -> str:
        return self.dtr_launch_url or f"{self.public_url}/"

    @property
    def public_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ) if env is None else env
        settings = cls(
            host=env.get("DTR_HOST", cls.host),
            port=int(env.get("DTR_PORT", cls.port)),
            database=env.get("DTR_DB", cls.database),
            max_body=int(env.get("DTR_MAX_BODY", cls.max_body)),
            max_response_body=int(env.get("DTR_MAX_RESPONSE_BODY", cls.max_response_body)),
            base_url=env.get("DTR_BASE_URL") or None,
            policies=env.get("DTR_POLICIES") or None,
            rate_limit=float(env.get("DTR_RATE_LIMIT", DEFAULT_RATE_LIMIT)),
            rate_burst=int(env.get("DTR_RATE_BURST", cls.rate_burst)),
            body_timeout=float(env.get("DTR_BODY_TIMEOUT", cls.body_timeout)),
            header_timeout=float(env.get("DTR_HEADER_TIMEOUT", cls.header_timeout)),
            dtr_launch_url=env.get("DTR_LAUNCH_URL") or None,
            workers=int(env.get("DTR_WORKERS", cls.workers)),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.workers < 0:
            raise ValueError(
                f"DTR_WORKERS must be 0 (one per core) or more, not {settings.workers}"
            )
        return replace(settings, workers=settings.workers or os.cpu_count() or 1)
