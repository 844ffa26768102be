"""Benchmark: `dtr impact` over a large synthetic archive.

Makes N stored requests of one policy from its worked examples (the clinical
cases beside the policy file, each decided as the service decides a request
and stored as the service stores it; copies differ in id, member and
response id), writes them into a new SQLite store in one transaction, then
runs ``dtr impact`` on them under the policy's own content at a new version
(nothing changes: the whole cost of re-scoring) and reports re-scored
requests per second beside the scorer's time per response measured on the
same responses in the same run, and the bound that sets for the cores.

Each ``--workers N`` given is one run of the command with that many worker
processes (default: one run with one per core). With ``--postgres`` the same
records are copied into a throw-away PostgreSQL cluster (Debian's binaries,
as the tests start it: tests/support/postgres.py) and two ``dtr impact``
processes of one worker each share one run, as two machines would.

Run: ``.venv/bin/python bench/bench_impact.py [--requests 100000] [--policy ID]
[--workers N ...] [--postgres]``. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dtr.cli import main as dtr
from policies.loader import load_examples
from qpackage.catalog import receive
from scoring.fhir_outputs import claim_response
from scoring.fill import fill
from service.store import COLUMNS, Record, SQLiteStore, response_key
from tests.support.cases import bundled_catalog
from tests.support.paths import ROOT


def made_responses(policy: str) -> list[tuple[dict[str, Any], date]]:
    """The policy's worked examples as responses to its current forms."""
    catalog = bundled_catalog()
    forms = {(p.kind, p.drug): p for p in catalog.current.values() if p.policy.id == policy}
    found = load_examples(ROOT / "policies" / f"{policy}.yaml")
    assert found is not None, f"{policy} has no worked examples"
    examples = found[1]
    return [
        (fill(forms[(e.request, e.drug)], examples.answers(e)), examples.as_of_for(e))
        for e in examples.cases
        if (e.request, e.drug) in forms
    ]


def fill_store(path: Path, policy: str, count: int) -> list[dict[str, Any]]:
    """``count`` records of ``policy`` in a new store; the responses decided."""
    catalog = bundled_catalog()
    decided = []
    for response, as_of in made_responses(policy):
        received = receive(catalog, response, as_of)
        decided.append((received, as_of))
    store = SQLiteStore(path)
    marks = ", ".join(["?"] * len(COLUMNS))
    with store.connections.writing() as db:
        for n in range(count):
            received, as_of = decided[n % len(decided)]
            rid = uuid.uuid4().hex
            response = copy.deepcopy(received.response)
            response["id"] = f"bench-{n}"
            response["subject"] = {"reference": f"Patient/bench-{n % 5000}"}
            determination = received.determination
            record = Record(
                id=rid,
                response_key=response_key(response, "bench"),
                response_id=response["id"],
                request_id="bench",
                received_at=f"{as_of.isoformat()}T12:00:00+00:00",
                questionnaire=determination.questionnaire,
                policy=policy,
                policy_version=received.package.policy.policy.version,
                evaluated_at=as_of.isoformat(),
                outcome=determination.outcome,
                response=response,
                determination=determination.to_json(),
                claim_response=claim_response(determination, rid),
                member=response["subject"]["reference"],
                owner="bench",
                reference=f"B{n:09d}",
            )
            db.execute(
                f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({marks})",
                record.row(),
            )
    store.close()
    return [received.response for received, _ in decided]


def scorer_ms(policy: str, rounds: int) -> float:
    """The scorer's median time per response (checks, indexing, evaluation),
    over the policy's worked examples."""
    from scoring import score

    catalog = bundled_catalog()
    made = made_responses(policy)
    packages = [catalog.resolve(response["questionnaire"]) for response, _ in made]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for (response, as_of), package in zip(made, packages, strict=True):
            score(package, response, as_of)
        times.append((time.perf_counter() - started) / len(made) * 1000)
    return statistics.median(times)


def on_postgres(path: Path, folder: Path, policy: str, new: Path, count: int) -> float:
    """The records of the SQLite store copied into a throw-away PostgreSQL
    cluster, then re-scored by two ``dtr impact`` processes of one worker
    each sharing the run: the seconds from their start to the last one's end."""
    import sqlite3
    from contextlib import closing

    import psycopg

    from service.store import PostgresStore
    from tests.support.postgres import cluster

    with cluster() as admin:
        url = admin.rsplit("/", 1)[0] + "/bench_impact"
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute("CREATE DATABASE bench_impact")
        PostgresStore(url).close()  # the schema made
        started = time.perf_counter()
        marks = ", ".join(["%s"] * len(COLUMNS))
        with closing(sqlite3.connect(path)) as source, psycopg.connect(url) as target:
            rows = source.execute(f"SELECT {', '.join(COLUMNS)} FROM determinations")
            with target.cursor() as cursor:
                while batch := rows.fetchmany(2000):
                    cursor.executemany(
                        f"INSERT INTO determinations ({', '.join(COLUMNS)}) VALUES ({marks})",
                        batch,
                    )
        print(f"{count} records copied into PostgreSQL in {time.perf_counter() - started:.1f} s")
        command = [sys.executable, "-m", "dtr", "impact", policy, "--to", str(new), "--db", url,
                   "--workers", "1", "--format", "csv"]  # fmt: skip
        started = time.perf_counter()
        machines = [
            subprocess.Popen(
                [*command, "--out", str(folder / f"machine-{n}.csv")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in (1, 2)
        ]
        errors = [machine.communicate()[1] for machine in machines]
        elapsed = time.perf_counter() - started
        assert [m.returncode for m in machines] == [0, 0], errors
        for n, said in enumerate(errors, 1):
            print(f"  process {n}: {said.strip().splitlines()[-1]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--policy", default="mn-dhs-mekinist")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the scorer's timing")
    parser.add_argument(
        "--workers",
        type=int,
        action="append",
        help="one run with this many worker processes (repeatable; default: one per core)",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="also two processes sharing a run on PostgreSQL"
    )
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    timed = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = folder / "bench.sqlite3"
        started = time.perf_counter()
        fill_store(path, args.policy, args.requests)
        print(f"{args.requests} stored requests of {args.policy} made in"
              f" {time.perf_counter() - started:.1f} s")  # fmt: skip
        text = (ROOT / "policies" / f"{args.policy}.yaml").read_text(encoding="utf-8")
        new = folder / f"{args.policy}.yaml"
        new.write_text(text.replace("  version: ", '  version: "99.0.0"  # was ', 1))
        for workers in args.workers or [cores]:
            # each run afresh: the run before it finished, its progress dropped
            started = time.perf_counter()
            code = dtr(["impact", args.policy, "--to", str(new), "--db", str(path),
                        "--workers", str(workers), "--format", "csv",
                        "--out", str(folder / "impact.csv")])  # fmt: skip
            elapsed = time.perf_counter() - started
            assert code == 0
            plural = "es" if workers != 1 else ""
            timed.append((f"SQLite, {workers} worker process{plural}", elapsed))
        if args.postgres:
            elapsed = on_postgres(path, folder, args.policy, new, args.requests)
            timed.append(("PostgreSQL, two processes of one worker sharing the run", elapsed))
    per_response = scorer_ms(args.policy, args.rounds)
    for label, elapsed in timed:
        print(f"dtr impact, {label}: {args.requests / elapsed:.0f} requests/s"
              f" ({elapsed:.1f} s, {elapsed / args.requests * 1000:.2f} ms a request, with the"
              " policy's verification and the report)")  # fmt: skip
    print(f"scorer alone: {per_response:.2f} ms a response; {cores} cores ÷ that:"
          f" {cores / per_response * 1000:.0f} responses/s")  # fmt: skip


if __name__ == "__main__":
    main()
