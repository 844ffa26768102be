"""Benchmark: durable determinations per second under concurrent clients.

Starts the real server (``dtr serve --workers N``) on loopback over a fresh
SQLite store — or, with ``--postgres URL``, over that PostgreSQL database —
and drives it with Debian's ``wrk`` (C, one thread, epoll: a load generator
that leaves the cores to the server) at 1, 8, 32 and 64 connections, each
request a POST of a distinct completed EOCCO329 response to ``$evaluate``
with a SMART Backend Services bearer token (a Lua script gives each request
its own response id, so each is a new record). Every 201 is a determination
committed before the reply: the figure is checked against the records the
store gained. Prints determinations/s, p50/p90/p99 latency, the server's CPU
(all its processes) per determination, for each worker count given — one
process and one per core side by side, in one run.

Run: ``.venv/bin/python bench/bench_load.py [--seconds 10] [--clients 1,8,32,64]
[--workers 1,2] [--postgres URL]`` (``apt-get install wrk``). Not a test:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qpackage.catalog import Catalog
from scoring.fill import fill
from service.store import open_store
from tests.support.callers import bearer, register_in
from tests.support.cases import base_answers, package_for

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "@@RESPONSE-ID@@"
# each wrk thread numbers its requests; the prefix keeps runs and threads apart
SCRIPT = """
local counter, prefix, body = 0, "", ""
local threads = 0
function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end
function init(args)
  prefix = args[1] .. "-" .. number
  local file = io.open(args[2], "rb")
  body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/fhir+json"
  wrk.headers["Authorization"] = args[3]
end
function request()
  counter = counter + 1
  local sent = body:gsub("@@RESPONSE%-ID@@", prefix .. "-" .. counter, 1)
  return wrk.format(nil, "/QuestionnaireResponse/$evaluate", nil, sent)
end
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes(root: int) -> list[int]:
    """The server process and its workers (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == root:
            children.append(int(stat.parent.name))
    return [root, *children]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes, live ones (Linux /proc)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _serve(database: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = {**os.environ, "DTR_RATE_LIMIT": "1000000", "DTR_RATE_BURST": "1000000"}
    command = [sys.executable, "-m", "dtr", "serve", "--port", str(port), "--db", database]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                # every worker up: each answers its first request slower
                time.sleep(2)
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def _body() -> str:
    catalog = Catalog.bundled()
    package = package_for(catalog, "eocco329", "initial")
    response = fill(package, base_answers("eocco329", "initial_met"), response_id=PLACEHOLDER)
    return json.dumps(response)


def _stored(database: str) -> int:
    store = open_store(database)
    try:
        with store.connections.reading() as db:
            return int(db.execute("SELECT count(*) FROM determinations")[0][0])
    finally:
        store.close()


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[unit]


def wrk(
    url: str, clients: int, seconds: int, script: Path, body: Path, token: str
) -> dict[str, float]:
    """One wrk run: requests, seconds, failures and latency percentiles."""
    tag = f"c{clients}-{time.time_ns()}"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "30s",
         "-s", str(script), url, "--", tag, str(body), token],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    if done is None:
        raise RuntimeError(out)
    figures = {
        "requests": float(done[1]),
        "seconds": _ms(done[2] + done[3]) / 1e3,
        "failures": float(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
    }
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    figures["failures"] += sum(int(n) for n in errors.groups()) if errors else 0
    for share in ("50", "90", "99"):
        found = re.search(rf"^\s+{share}%\s+(\S+)$", out, re.MULTILINE)
        figures[f"p{share}"] = _ms(found[1]) if found else float("nan")
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each level's length")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}")
    parser.add_argument("--postgres", help="a postgresql:// URL (its determinations are kept)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench_load needs wrk: apt-get install wrk")
    levels = [int(c) for c in args.clients.split(",")]
    folder = Path(tempfile.mkdtemp())
    script, body = folder / "evaluate.lua", folder / "response.json"
    script.write_text(SCRIPT)
    body.write_text(_body())
    store = "PostgreSQL" if args.postgres else "SQLite (WAL, synchronous=FULL)"
    print(f"{store}; wrk, 1 thread, {args.seconds} s a level; {os.cpu_count()} cores shared")
    print("| workers | clients | determinations/s | p50 ms | p90 ms | p99 ms | server CPU ms"
          " per determination | cores busy | records stored / 2xx answered | failures |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    try:
        for workers in (int(w) for w in args.workers.split(",")):
            database = args.postgres or str(folder / f"load-{workers}.sqlite3")
            register_in(database, "bench")
            process, url = _serve(database, workers)
            try:
                token = bearer(url, "bench")["Authorization"]
                for level in levels:
                    pids = _processes(process.pid)
                    cpu, before = _cpu_seconds(pids), _stored(database)
                    run = wrk(url, level, args.seconds, script, body, token)
                    used = _cpu_seconds(pids) - cpu
                    gained = _stored(database) - before
                    answered = run["requests"] - run["failures"]
                    print(
                        f"| {workers} | {level} | {answered / run['seconds']:.0f} |"
                        f" {run['p50']:.1f} | {run['p90']:.1f} | {run['p99']:.1f} |"
                        f" {used / max(answered, 1) * 1e3:.2f} | {used / run['seconds']:.2f} |"
                        f" {gained} / {answered:.0f}{'' if gained >= answered else ' LOST'} |"
                        f" {run['failures']:.0f} |",
                        flush=True,
                    )
            finally:
                process.terminate()
                process.wait(timeout=60)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
