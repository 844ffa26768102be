"""The real server process on loopback: scoring over HTTP, a determination
surviving a restart, and concurrent clients losing nothing."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.cases import package_for
from tests.support.paths import ROOT
from tests.support.server import Server, free_port


def mekinist(catalog: Catalog, response_id: str, quantity: int = 30) -> dict[str, Any]:
    answers = {
        "requested_product": "0078-0668",
        "requested_quantity": quantity,
        "indication": "NSCLC",
        "birth_date": "1955-02-14",
        "nsclc_braf_v600e": True,
        "nsclc_with_tafinlar": True,
    }
    return fill(
        package_for(catalog, "mn-dhs-mekinist", "initial"), answers, response_id=response_id
    )


def test_score_over_http_and_survive_a_restart(server: Server, catalog: Catalog) -> None:
    reply = httpx.post(
        f"{server.url}/QuestionnaireResponse/$evaluate",
        content=json.dumps(mekinist(catalog, "r1")),
        headers=server.fhir(),
    )
    assert reply.status_code == 201, reply.text
    record = reply.json()["id"]
    before = httpx.get(f"{server.url}/determinations/{record}", headers=server.auth()).json()
    assert before["outcome"] == "approved" and before["authorization"]["months"] == 12

    server.stop()
    server.start()
    # the token outlives the restart: the signing secret is in the store
    after = httpx.get(f"{server.url}/determinations/{record}", headers=server.auth())
    assert after.status_code == 200
    assert after.json() == before
    again = httpx.post(
        f"{server.url}/QuestionnaireResponse/$evaluate",
        content=json.dumps(mekinist(catalog, "r1")),
        headers=server.fhir(),
    )
    assert again.status_code == 200 and again.json()["id"] == record


@pytest.fixture(params=[1, 2], ids=["one process", "two workers"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """The server as one process, and as two worker processes on one SQLite
    file (one writer at a time across them: service.store.SQLiteConnections)."""
    running = Server(tmp_path / "served.sqlite3", {"DTR_WORKERS": str(request.param)}).start()
    yield running
    running.stop()


def test_concurrent_clients_lose_nothing(served: Server, catalog: Catalog) -> None:
    server = served
    bodies = [json.dumps(mekinist(catalog, f"c{n}", quantity=20 + n % 15)) for n in range(48)]
    headers = server.fhir()

    def submit(body: str) -> tuple[int, str]:
        with httpx.Client(timeout=30) as client:
            reply = client.post(
                f"{server.url}/QuestionnaireResponse/$evaluate", content=body, headers=headers
            )
            return reply.status_code, reply.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit, bodies))
    assert [status for status, _ in results] == [201] * len(bodies)
    ids = {record for _, record in results}
    assert len(ids) == len(bodies)
    for record in ids:
        reply = httpx.get(f"{server.url}/ClaimResponse/{record}", headers=server.auth())
        assert reply.status_code == 200

    # the same response sent by eight clients at once is stored once
    same = bodies[0].replace('"c0"', '"dup"')
    with ThreadPoolExecutor(max_workers=8) as pool:
        duplicates = list(pool.map(submit, [same] * 8))
    assert len({record for _, record in duplicates}) == 1
    assert sorted(status for status, _ in duplicates) == [200] * 7 + [201]


def test_slow_clients_do_not_hold_the_service(tmp_path: Path, catalog: Catalog) -> None:
    """Twenty clients that start a body and stop sending: the others are
    served meanwhile, and each slow one gets a 408 once the body timeout
    passes, its connection freed."""
    import socket

    server = Server(tmp_path / "slow.sqlite3", {"DTR_BODY_TIMEOUT": "1"}).start()
    authorization = server.auth()["Authorization"].encode()
    slow: list[socket.socket] = []
    try:
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            conn.sendall(
                b"POST /QuestionnaireResponse/$evaluate HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: " + authorization + b"\r\n"
                b"Content-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{"
            )
            slow.append(conn)
        started = time.monotonic()
        reply = httpx.post(
            f"{server.url}/QuestionnaireResponse/$evaluate",
            content=json.dumps(mekinist(catalog, "while-slow")),
            headers=server.fhir(),
            timeout=10,
        )
        assert reply.status_code == 201
        assert time.monotonic() - started < 1  # not waiting behind the slow ones
        for conn in slow:
            answer = b""
            while b"not sent in time" not in answer:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"not sent in time" in answer
    finally:
        for conn in slow:
            conn.close()
        server.stop()


def test_a_client_past_the_rate_limit_waits(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "limited.sqlite3", {"DTR_RATE_LIMIT": "0.5", "DTR_RATE_BURST": "5"}
    ).start()
    try:
        # the start-up probe took some; the rest of the burst, then a refusal
        codes = [httpx.get(f"{server.url}/metadata").status_code for _ in range(8)]
        assert codes.count(429) >= 3 and codes[0] == 200
        refused = httpx.get(f"{server.url}/Questionnaire/eocco329-initial")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["issue"][0]["code"] == "throttled"
        # the portal's own files are not counted
        assert httpx.get(f"{server.url}/static/portal.js").status_code == 200
    finally:
        server.stop()


def test_the_example_backend_client_registered_by_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The way in docs/api.md gives: keys made by examples/backend_client.py, the
    client registered with `dtr clients add`, a token from the running
    server, a read with it."""
    import importlib.util

    from dtr.cli import main

    spec = importlib.util.spec_from_file_location(
        "backend_client", ROOT / "examples" / "backend_client.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.chdir(tmp_path)
    example.make_keys("my-ehr")
    db = str(tmp_path / "example.sqlite3")
    assert (
        main(
            [
                "clients",
                "add",
                "my-ehr",
                "--name",
                "My EHR",
                "--jwks",
                "var/my-ehr.jwks.json",
                "--db",
                db,
            ]
        )
        == 0
    )
    assert (
        main(["clients", "add", "other", "--jwks", "var/my-ehr.key.pem", "--db", db]) == 2
    )  # not a JWKS
    # the private key lies in var/ (ignored by git), readable by its owner alone
    assert (tmp_path / "var" / "my-ehr.key.pem").stat().st_mode & 0o077 == 0
    private = json.loads((tmp_path / "var" / "my-ehr.jwks.json").read_text())
    private["keys"][0]["d"] = "secret"
    (tmp_path / "private.json").write_text(json.dumps(private))
    assert main(["clients", "add", "other", "--jwks", "private.json", "--db", db]) == 2
    assert "register the public key only" in capsys.readouterr().err
    server = Server(tmp_path / "example.sqlite3").start()
    try:
        token = example.token("my-ehr", server.url)
        reply = httpx.get(
            f"{server.url}/Questionnaire/eocco329-initial",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert reply.status_code == 200 and reply.json()["id"] == "eocco329-initial"
        assert main(["clients", "suspend", "my-ehr", "--db", db]) == 0
        with pytest.raises(urllib.error.HTTPError) as refused:
            example.token("my-ehr", server.url)
        assert json.loads(refused.value.read())["error"] == "invalid_grant"
    finally:
        server.stop()


def test_nothing_acknowledged_is_lost_after_kill_9(tmp_path: Path, catalog: Catalog) -> None:
    """Eight clients submitting while the server is killed (SIGKILL, no
    shutdown): after a restart every determination acknowledged with a 201
    is there, with the same ClaimResponse."""
    import signal
    import threading

    server = Server(tmp_path / "killed.sqlite3").start()
    headers = server.fhir()
    acknowledged: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def submit_until_refused(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(10_000):
                body = json.dumps(mekinist(catalog, f"kill-{n}-{i}", quantity=20 + i % 10))
                try:
                    reply = client.post(
                        f"{server.url}/QuestionnaireResponse/$evaluate",
                        content=body,
                        headers=headers,
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if reply.status_code == 201:
                    with lock:
                        acknowledged[reply.json()["id"]] = reply.json()

    threads = [threading.Thread(target=submit_until_refused, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 60:
        time.sleep(0.01)
    assert server.process is not None
    server.process.send_signal(signal.SIGKILL)  # mid-stream: requests are in flight
    for thread in threads:
        thread.join()
    server.process.wait()
    server.process = None
    try:
        server.start()
        for rid, claim in acknowledged.items():
            stored = httpx.get(f"{server.url}/ClaimResponse/{rid}", headers=server.auth())
            assert stored.status_code == 200, rid
            assert stored.json() == claim
    finally:
        server.stop()


def test_the_first_start_makes_a_user_and_says_how_to_sign_in(tmp_path: Path) -> None:
    """`dtr serve` on a new store prints a first user's name and a password
    made then; that password signs in; a second start makes no other."""
    import re

    port = free_port()
    command = [sys.executable, "-m", "dtr", "serve", "--port", str(port),
               "--db", str(tmp_path / "first.sqlite3")]  # fmt: skip

    def stop(process: subprocess.Popen[str]) -> None:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()

    def start(last: str) -> tuple[subprocess.Popen[str], str]:
        """Started, with what it printed up to the line starting ``last``."""
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert process.stdout is not None
        printed = ""
        while not printed.splitlines() or not printed.splitlines()[-1].startswith(last):
            line = process.stdout.readline()
            assert line, f"the server exited: {printed}"
            printed += line
        return process, printed

    # the sign-in is the last thing printed, set apart below the rule
    process, printed = start("  Shown once.")
    url = f"http://127.0.0.1:{port}"
    try:
        assert printed.startswith(f"dtr: serving on {url}/"), printed
        found = re.search(r"Sign in at +(\S+)\n +user name +(\S+)\n +password +(\S+)", printed)
        assert found, printed
        sign_in, username, password = found.groups()
        assert sign_in == f"{url}/"
        with httpx.Client(base_url=url, timeout=10) as browser:
            for _ in range(100):
                try:
                    page = browser.get("/signin")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf
            form = {"username": username, "password": password, "csrf": csrf[1], "next": "/"}
            signed = browser.post("/signin", data=form, follow_redirects=True)
            assert signed.status_code == 200 and "Sign out" in signed.text  # the portal
    finally:
        stop(process)
    process, printed = start("dtr: serving on")
    process.terminate()
    assert process.stdout is not None
    printed += process.stdout.read()  # all it said, to its exit
    stop(process)
    assert "dtr: serving on" in printed and "password" not in printed


def _workers(pid: int) -> set[int]:
    """The worker processes a server process started (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in command and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _until(check: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_a_worker_that_dies_is_replaced_and_all_stop_with_the_server(tmp_path: Path) -> None:
    import os
    import signal

    server = Server(tmp_path / "workers.sqlite3", {"DTR_WORKERS": "2"}).start()
    assert server.process is not None
    parent = server.process.pid
    try:
        first = _until(lambda: w if len(w := _workers(parent)) == 2 else None)
        assert first, "two workers"
        os.kill(min(first), signal.SIGKILL)
        replaced = _until(lambda: w if len(w := _workers(parent)) == 2 and w != first else None)
        assert replaced and min(first) not in replaced
        assert httpx.get(f"{server.url}/metadata", timeout=5).status_code == 200
    finally:
        server.stop()
    # stopped with the server (SIGTERM to it): no worker left serving the port
    assert _until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in replaced), 15)


def test_workers_stop_when_their_server_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed server cannot stop its workers: each notices and stops itself."""
    import os
    import signal

    server = Server(tmp_path / "orphans.sqlite3", {"DTR_WORKERS": "2"}).start()
    assert server.process is not None
    workers = _until(lambda: w if len(w := _workers(server.process.pid)) == 2 else None)
    assert workers
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    server.process = None
    assert _until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 15)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/metadata", timeout=2)
