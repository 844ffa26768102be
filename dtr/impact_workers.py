"""The re-scoring of ``dtr impact`` spread over worker processes.

A run is cut into parts (consecutive stored requests, :meth:`Store.impact_plan`);
the process that claims a part reads its requests and hands them to its
workers in chunks, one chunk per task; each worker re-scores its chunk under
the new version and gives back the chunk's report and CSV rows, and the
claiming process merges them in the part's order and keeps the part in the
store, in one transaction: a part is kept whole or not at all. The report of
a run is its parts' reports merged in order (:meth:`Impact.merge`), so it is
the same whatever the number of workers or machines, and whether or not the
run was stopped and taken up again.

Each worker builds the old versions' catalog and the new version's forms once,
when it starts (a few tenths of a second), from the same files the command
read; the scorer is CPU-bound Python, so processes, not threads, use the cores.
With one worker nothing is started: the command's own process re-scores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.model import Policy
from qpackage import impact
from qpackage.catalog import Catalog
from qpackage.impact import Impact, Stored, csv_line, proposed_forms


@dataclass(frozen=True)
class Setup:
    """What every worker builds its scorer from."""

    archive: Path
    policy: str  # the policy id
    new: Policy  # the new version


@dataclass
class _Scorer:
    setup: Setup
    old: Catalog
    forms: dict[str, Any]


_SCORER: _Scorer | None = None  # the worker's own, built once by _start


def _start(setup: Setup) -> None:
    global _SCORER
    old = Catalog([], setup.archive, eager=False, only=setup.policy)
    _SCORER = _Scorer(setup, old, proposed_forms(setup.new))


def _chunk(records: Sequence[Stored]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A chunk re-scored: its report (JSON) and each request's CSV row."""
    scorer = _SCORER
    assert scorer is not None, "the worker was not started"
    report = Impact(scorer.setup.policy, new_version=scorer.setup.new.policy.version)
    rows = []
    for record in records:
        # looked up on the module on each call, so a test may stand in for it
        change = impact.rescore(scorer.old, scorer.forms, record)
        report.add(change)
        rows.append((record.id, csv_line(change)))
    return report.to_json(), rows


class Workers:
    """Re-scores the requests of a part: in this process with one worker,
    else in a pool of worker processes."""

    def __init__(self, setup: Setup, count: int, chunk: int = 25) -> None:
        self.setup = setup
        self.count = max(1, count)
        self.chunk = max(1, chunk)
        self._pool: Any = None

    def __enter__(self) -> Workers:
        if self.count == 1:
            _start(self.setup)
        else:
            # fork where the system has it (the workers start at once, from
            # this process's memory); spawn elsewhere
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._pool = context.Pool(self.count, initializer=_start, initargs=(self.setup,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            # stopped by an error or a signal, the workers are ended, not waited for
            if exc[0] is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def rescore(self, records: Sequence[Stored]) -> tuple[Impact, list[tuple[str, str]]]:
        """The part's report and rows, in the records' order."""
        chunks = [records[i : i + self.chunk] for i in range(0, len(records), self.chunk)]
        if self._pool is None:
            results: Iterator[tuple[dict[str, Any], list[tuple[str, str]]]] = map(_chunk, chunks)
        else:
            results = iter(self._pool.map(_chunk, chunks))
        report = Impact(self.setup.policy, new_version=self.setup.new.policy.version)
        rows: list[tuple[str, str]] = []
        for found, chunk_rows in results:
            report.merge(Impact.from_json(found))
            rows += chunk_rows
        return report, rows
