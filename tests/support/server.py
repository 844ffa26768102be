"""The real server process on loopback, for the tests that need a process
(restarts, kills, stalled sockets, the HTTP parser's own refusals): started
with ``dtr serve`` on a free port over its own store, a backend client
registered for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from tests.support.callers import bearer, register_in
from tests.support.dtr_requests import FHIR
from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db: Path, env: dict[str, str] | None = None) -> None:
        self.db = db
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._auth: dict[str, str] | None = None

    def auth(self) -> dict[str, str]:
        """A registered backend client's Authorization header (one token per server)."""
        if self._auth is None:
            self._auth = bearer(self.url)
        return self._auth

    def fhir(self) -> dict[str, str]:
        return {**FHIR, **self.auth()}

    def start(self) -> Server:
        register_in(str(self.db))
        command = [
            sys.executable,
            "-m",
            "dtr",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            str(self.db),
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **(self.env or {})},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/metadata", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the server did not answer within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def answer_then_eof(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket
    timeout, the server never closing, fails the test)."""
    answer = b""
    while chunk := conn.recv(4096):
        answer += chunk
    return answer
