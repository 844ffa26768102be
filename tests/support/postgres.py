"""A throw-away PostgreSQL cluster on loopback, for the tests of the
PostgreSQL store (Debian's `postgresql` package, installed by scripts/test),
in a temporary folder; started once per run by the ``postgres`` fixture
(tests/conftest.py), stopped and removed at its end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(
            f"PostgreSQL's {name} is not installed (apt-get install postgresql)", pytrace=False
        )
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    # the server refuses to run as root
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextmanager
def cluster() -> Iterator[str]:
    """The URL of the cluster's ``postgres`` database, as user ``dtr``."""
    # not under pytest's tmp_path: its folders are private to root, and the
    # server runs as the postgres user
    folder = Path(tempfile.mkdtemp(prefix="dtr-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        _as_postgres([_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "dtr"]), **run
    )  # type: ignore[call-overload]
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = _bin("pg_ctl")
    subprocess.run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-o", options, "-w", "start", "-l", str(folder / "log")]
        ),
        **run,
    )  # type: ignore[call-overload]
    try:
        yield f"postgresql://dtr@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), **run)  # type: ignore[call-overload]
        shutil.rmtree(folder, ignore_errors=True)
