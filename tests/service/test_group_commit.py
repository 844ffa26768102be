"""The store's writer thread (``service.store.GroupCommit``): saves queued
from many threads are all stored, each told its own record; a group whose
transaction fails is saved one by one, so only the record at fault fails; a
save whose caller stopped waiting is stored all the same; closing the store
writes what is queued."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from service.store import Record, SQLiteStore

T = TypeVar("T")


def record(rid: str, key: str | None = None) -> Record:
    return Record(
        id=rid,
        response_key=key or f"key-{rid}",
        response_id=rid,
        request_id="r",
        received_at="2026-12-06T00:00:00+00:00",
        questionnaire="https://x.example/Questionnaire/q|1",
        policy="q",
        policy_version="1",
        evaluated_at="2026-12-06",
        outcome="approved",
        response={"resourceType": "QuestionnaireResponse", "subject": {"reference": "Patient/p"}},
        determination={"outcome": "approved"},
        claim_response={"resourceType": "ClaimResponse"},
    )


class GatedStore(SQLiteStore):
    """A store whose group writes wait for ``gate``: the test queues saves
    while the writer is held, so they are written as one group."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.groups: list[list[str]] = []

    def save_all(self, records):  # type: ignore[no-untyped-def]
        self.groups.append([r.id for r in records])
        self.entered.set()
        assert self.gate.wait(10)
        return super().save_all(records)


def test_saves_from_many_threads_are_all_stored(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    records = [record(f"r{n}") for n in range(60)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = list(pool.map(store.saves.submit, records))
        saved = [future.result(timeout=30) for future in futures]
    assert [(r.id, new) for r, new in saved] == [(r.id, True) for r in records]
    assert store.count() == 60
    assert len({r.reference for r, _ in saved}) == 60
    store.close()


def test_a_failing_group_is_saved_one_by_one(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.sqlite3")
    store.gate.set()
    store.save(record("taken"))
    store.gate.clear()
    store.entered.clear()
    first = store.saves.submit(record("first"))
    assert store.entered.wait(10)  # the writer holds "first"; the rest queue
    good = store.saves.submit(record("good"))
    # a new response under an id already stored: the primary key refuses it
    bad = store.saves.submit(record("taken", key="key-other"))
    later = store.saves.submit(record("later"))
    store.gate.set()
    assert first.result(timeout=10)[1] is True
    assert good.result(timeout=10)[1] is True and later.result(timeout=10)[1] is True
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(timeout=10)
    # written as one group, which failed, then one by one
    assert ["good", "taken", "later"] in store.groups
    assert {"first", "good", "later", "taken"} <= {r.id for r in stored(store)}
    assert store.count() == 4
    store.close()


def test_a_save_whose_caller_stopped_waiting_is_stored(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.sqlite3")
    first = store.saves.submit(record("first"))
    assert store.entered.wait(10)
    abandoned: Future[tuple[Record, bool]] = store.saves.submit(record("abandoned"))
    assert abandoned.cancel()
    store.gate.set()
    assert first.result(timeout=10)[1] is True
    store.close()  # once the writer has written the queue
    reopened = SQLiteStore(tmp_path / "s.sqlite3")
    assert reopened.get("abandoned") is not None
    reopened.close()


def test_closing_the_store_writes_what_is_queued(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.sqlite3")
    futures = [store.saves.submit(record(f"r{n}")) for n in range(5)]
    closing = threading.Thread(target=store.close)
    assert store.entered.wait(10)
    closing.start()
    store.gate.set()
    closing.join(10)
    assert not closing.is_alive()
    assert all(f.result(timeout=0)[1] for f in futures)
    with pytest.raises(RuntimeError, match="closed"):
        store.saves.submit(record("late"))
    reopened = SQLiteStore(tmp_path / "s.sqlite3")
    assert reopened.count() == 5
    reopened.close()


def in_a_thread(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` on a thread of its own: the suite's browser
    tests leave an event loop running on the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result(timeout=60)


def stored(store: SQLiteStore) -> list[Record]:
    with store.connections.reading() as db:
        ids = [row[0] for row in db.execute("SELECT id FROM determinations")]
    return [r for r in (store.get(i) for i in ids) if r is not None]


def test_coroutines_are_told_their_own_records(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    records = [record(f"r{n}") for n in range(40)] + [record("again", key="key-r3")]

    async def all_saved() -> list[tuple[Record, bool]]:
        return list(await asyncio.gather(*(store.saves.save(r) for r in records)))

    saved = in_a_thread(all_saved)
    assert [(r.id, new) for r, new in saved] == [(f"r{n}", True) for n in range(40)] + [
        ("r3", False)  # the same response again: the record stored first
    ]
    assert store.count() == 40
    store.close()


def test_a_coroutine_that_stopped_waiting_leaves_its_record_stored(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "s.sqlite3")

    async def abandon() -> None:
        task = asyncio.ensure_future(store.saves.save(record("abandoned")))
        await asyncio.to_thread(store.entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    in_a_thread(abandon)
    store.gate.set()
    store.close()
    reopened = SQLiteStore(tmp_path / "s.sqlite3")
    assert reopened.get("abandoned") is not None
    reopened.close()


def test_a_fault_of_the_writer_is_told_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer that cannot match results to its group (a planted fault:
    ``save_all`` answering for none) fails that group's waiters, thread and
    coroutine alike, with the error instead of leaving them waiting for
    ever; the log names the error's type only; the next save is written."""

    class Miscounting(SQLiteStore):
        fault = True

        def save_all(self, records):  # type: ignore[no-untyped-def]
            saved = super().save_all(records)
            return [] if self.fault else saved

    store = Miscounting(tmp_path / "s.sqlite3")
    with pytest.raises(ValueError):
        store.saves.submit(record("a")).result(timeout=10)

    async def saved() -> tuple[Record, bool]:
        return await asyncio.wait_for(store.saves.save(record("b")), 10)

    with pytest.raises(ValueError):
        in_a_thread(saved)
    assert "the store's writer failed a group: ValueError" in caplog.text
    store.fault = False
    assert store.saves.submit(record("c")).result(timeout=10)[1] is True
    store.close()
