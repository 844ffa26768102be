"""Benchmark: durable determinations per second under concurrent clients.

Starts the real server (``dtr serve``, uvicorn) on loopback with a fresh
SQLite store — or, with ``--postgres URL``, two instances sharing one
PostgreSQL database — and drives it with bounded concurrent clients (1, 8,
32, 64 by default), each POSTing distinct completed responses to
``$evaluate`` as a registered backend client (SMART Backend Services: each
client signs an assertion for a bearer token, as a DTR client does). Every
201 is a determination committed before the reply was sent. Prints determinations/s, p50/p95/p99 latency and the CPU the server
processes used (the load generator shares the machine's cores).

Run: ``.venv/bin/python bench/bench_load.py [--requests N] [--clients 1,8,32]``.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qpackage.catalog import Catalog
from scoring.fill import fill
from tests.support.callers import BackendAuth, register_in
from tests.support.cases import base_answers, package_for

ROOT = Path(__file__).resolve().parent.parent
FHIR = {"content-type": "application/fhir+json"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(database: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = {**os.environ, "DTR_RATE_LIMIT": "1000000", "DTR_RATE_BURST": "1000000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dtr", "serve", "--port", str(port), "--db", database],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def _bodies(count: int, tag: str) -> list[bytes]:
    catalog = Catalog.bundled()
    package = package_for(catalog, "eocco329", "initial")
    answers = base_answers("eocco329", "initial_met")
    return [
        json.dumps(fill(package, answers, response_id=f"{tag}-{n}")).encode() for n in range(count)
    ]


def run(urls: list[str], bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """(seconds, latencies in ms, failures) for the bodies sent by ``clients``."""
    sessions = [
        httpx.Client(base_url=urls[n % len(urls)], timeout=60, auth=_auth(urls[n % len(urls)]))
        for n in range(clients)
    ]

    def send(n: int) -> float:
        session = sessions[n % clients]
        start = time.perf_counter()
        reply = session.post("/QuestionnaireResponse/$evaluate", content=bodies[n], headers=FHIR)
        elapsed = (time.perf_counter() - start) * 1e3
        return elapsed if reply.status_code == 201 else -elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(send, range(len(bodies))))
    seconds = time.perf_counter() - started
    for session in sessions:
        session.close()
    return seconds, [abs(r) for r in results], sum(1 for r in results if r < 0)


def _auth(url: str) -> BackendAuth:
    configuration = httpx.get(f"{url}/.well-known/smart-configuration").json()
    endpoint = configuration["token_endpoint"]
    return BackendAuth("bench", endpoint, endpoint.removeprefix(configuration["issuer"]))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--postgres", help="a postgresql:// URL: two instances share it")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    folder = Path(tempfile.mkdtemp())
    databases = [args.postgres, args.postgres] if args.postgres else [str(folder / "load.sqlite3")]
    register_in(databases[0], "bench")
    servers = [_serve(db) for db in databases]
    urls = [url for _process, url in servers]
    store = "PostgreSQL, 2 instances" if args.postgres else "SQLite, 1 instance"
    print(
        f"{store}; {args.requests} requests a level; {os.cpu_count()} cores shared with the clients"
    )
    print("| clients | determinations/s | p50 ms | p95 ms | p99 ms | server CPU | failures |")
    print("|---|---|---|---|---|---|---|")
    try:
        for level in levels:
            bodies = _bodies(args.requests, f"c{level}-{time.time_ns()}")
            cpu = [_cpu_seconds(p.pid) for p, _url in servers]
            seconds, latencies, failures = run(urls, bodies, level)
            used = sum(_cpu_seconds(p.pid) for p, _url in servers) - sum(cpu)
            print(
                f"| {level} | {len(bodies) / seconds:.0f} | {statistics.median(latencies):.1f} |"
                f" {_percentile(latencies, 0.95):.1f} | {_percentile(latencies, 0.99):.1f} |"
                f" {used / seconds:.0%} of a core | {failures} |"
            )
    finally:
        for process, _url in servers:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
