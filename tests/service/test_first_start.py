"""The first start is idempotent: two ``dtr serve`` started together on one
fresh store both come up and serve — the migrations and the first portal
user raced for, made once, its password printed by one of them and good
on both; and the race for the first user itself, instances at once. (Several
instances serving for good are a PostgreSQL set-up; the same races on
PostgreSQL are in test_store_postgres.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from service.accounts import Accounts, User
from service.store import SQLiteStore
from tests.support.callers import PASSWORD
from tests.support.paths import ROOT
from tests.support.server import free_port

FIRST_USER = re.compile(r"First start: a portal user was made.*?password +(\S+)", re.DOTALL)


@dataclass
class Started:
    url: str
    process: subprocess.Popen[bytes]
    out: Path
    err: Path


@contextmanager
def serving_together(database: str, folder: Path, count: int = 2) -> Iterator[list[Started]]:
    """``count`` servers launched at once on one store, each answering
    /metadata (a server that exits instead fails, with its last words)."""
    started = []
    for n in range(count):
        port = free_port()
        out, err = folder / f"serve-{n}.out", folder / f"serve-{n}.err"
        command = [sys.executable, "-m", "dtr", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--db", database]  # fmt: skip
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                command, cwd=ROOT, stdout=stdout, stderr=stderr, env=dict(os.environ)
            )
        started.append(Started(f"http://127.0.0.1:{port}", process, out, err))
    try:
        for server in started:
            deadline = time.monotonic() + 60
            while True:
                if server.process.poll() is not None:
                    last = server.err.read_text(errors="replace").strip().splitlines()[-3:]
                    raise AssertionError(f"a server exited ({server.process.returncode}): {last}")
                try:
                    # answering, and done saying so (the sign-in is printed
                    # once the server listens, after "serving on")
                    answers = httpx.get(f"{server.url}/metadata", timeout=1).status_code == 200
                    if answers and "dtr: serving on" in server.out.read_text():
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a server did not answer within 60 s"
                time.sleep(0.2)
        yield started
    finally:
        for server in started:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def signs_in(url: str, password: str) -> bool:
    """Whether the portal user ``office`` signs in with this password."""
    with httpx.Client(base_url=url, timeout=10) as browser:
        page = browser.get("/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf, page.text
        form = {"username": "office", "password": password, "csrf": csrf[1], "next": "/"}
        reply = browser.post("/signin", data=form)
        return reply.status_code == 303 and "dtr_session" in browser.cookies


def check_both_serve(database: str, folder: Path) -> None:
    with serving_together(database, folder) as servers:
        printed = [FIRST_USER.search(s.out.read_text()) for s in servers]
        made = [m[1] for m in printed if m]
        assert len(made) == 1, [s.out.read_text() for s in servers]  # one first user, once
        for server in servers:
            assert signs_in(server.url, made[0]), server.url
            assert not signs_in(server.url, "not the password")


def test_two_servers_start_together_on_one_fresh_sqlite_store(tmp_path: Path) -> None:
    check_both_serve(str(tmp_path / "fresh.sqlite3"), tmp_path)


def test_the_first_user_is_made_once_however_many_try(tmp_path: Path) -> None:
    """Instances racing for the first user: one makes it, the others find
    it made (None), with no error; a second user of the same name is the
    store's plain refusal, never a database error."""
    path = tmp_path / "users.sqlite3"
    stores = [SQLiteStore(path) for _ in range(4)]  # one per instance
    try:
        first_users = race_for_the_first_user([Accounts(s) for s in stores])
        assert sorted(u is not None for u in first_users) == [False, False, False, True]
    finally:
        for store in stores:
            store.close()


def race_for_the_first_user(instances: list[Accounts]) -> list[User | None]:
    """Each instance's ``add_first_user``, all at once; then ``add_user`` of
    a name taken (a ValueError) and of a new one."""
    barrier = threading.Barrier(len(instances))

    def make(accounts: Accounts) -> User | None:
        barrier.wait()
        return accounts.add_first_user(
            "office", "Office user", "office", "example-practice", PASSWORD
        )

    with ThreadPoolExecutor(len(instances)) as pool:
        made = list(pool.map(make, instances))
    with pytest.raises(ValueError, match="exists already"):
        instances[-1].add_user("office", "Another", "office", "example-practice", PASSWORD)
    instances[-1].add_user("pat", "Pat", "pharmacist", None, PASSWORD)  # no organization
    assert [u.username for u in instances[0].users()] == ["office", "pat"]
    return made
