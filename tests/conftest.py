"""Shared fixtures and the lazy collection of the case tables.

Fixtures every package's tests use, defined once: the bundled policies, their
catalog, the evaluation date and the bundled payers' review settings. The
helpers behind them (callers and their tokens, case tables, the server
process, data paths) are in ``tests/support/``; the browser tests' server and
browser in ``tests/browser/conftest.py``.

A test marked ``@pytest.mark.cases(NAME)`` taking a ``case`` argument is
parametrized here, when it is collected, with the rows of the case table
NAME (``tests/support/cases.py``): no table is read at import, and a run
that selects a few tests reads only their tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from access import passwords
from policies.loader import bundled_policies
from policies.model import Policy
from qpackage.catalog import Catalog
from service.app import create_app
from service.settings import Settings
from tests.support.callers import People
from tests.support.cases import AS_OF, bundled_catalog, cases
from tests.support.postgres import cluster
from tests.support.server import Server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cases(name): parametrize `case` with the rows of a case table (tests/cases)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("cases")
    if marker is not None:
        (name,) = marker.args
        metafunc.parametrize("case", cases(name))


@pytest.fixture(scope="session", autouse=True)
def product_password_hasher() -> Iterator[PasswordHasher]:
    """Argon2id at its lowest cost for the tests in this process; the
    product's own hasher (RFC 9106's second recommended parameters) is
    yielded for the test that checks it. A hash carries its parameters, so
    users made here verify cheaply: each sign-in would otherwise cost the
    full hash (about 0.14 s on the 2-core machine, a fifth of some modules'
    time). The servers the tests start as processes keep the real cost."""
    product = passwords._HASHER
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        yield product


@pytest.fixture(scope="session", autouse=True)
def score_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`dtr score`'s catalog cache (qpackage.cache) in a folder of this run,
    never the user's own; the commands the tests start as processes inherit
    it."""
    folder = tmp_path_factory.mktemp("dtr-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DTR_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster for the run (started when a test first asks):
    the URL of its ``postgres`` database. A test that needs a database of its
    own creates one in it."""
    with cluster() as url:
        yield url


@pytest.fixture(scope="session")
def policies() -> dict[str, Policy]:
    return {policy.id: policy for policy in bundled_policies()}


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The bundled policies' released packages, built once per run."""
    return bundled_catalog()


@pytest.fixture(scope="session")
def as_of() -> date:
    """The evaluation date of every case table (2026-11-24)."""
    return AS_OF


@pytest.fixture()
def app(catalog: Catalog, tmp_path: Path) -> Any:
    """The service in process on a fresh store: the bundled catalog, the
    bundled payers' review settings, its clock at the case tables' date."""
    return create_app(
        Settings(database=str(tmp_path / "store.sqlite3")), catalog=catalog, clock=lambda: AS_OF
    )


@pytest.fixture()
def people(app: Any) -> People:
    """Callers of that service: a registered system, an office, a pharmacist."""
    return People(app)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    """The real server process on its own store, stopped after the test."""
    running = Server(tmp_path / "audit.sqlite3").start()
    yield running
    running.stop()


# --- phase times, printed after every run --------------------------------------------------
# How long collection took and each package's tests (setup, call and teardown
# summed), so a slow part shows in every run's output. Reported, never asserted:
# times vary with the machine's load.

_PHASES: dict[str, float] = {}


def pytest_collection(session: pytest.Session) -> None:
    _PHASES["collection"] = -time.perf_counter()


def pytest_collection_finish(session: pytest.Session) -> None:
    _PHASES["collection"] += time.perf_counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::", 1)[0].split("/")
    folder = path[1] if len(path) > 2 else "tests (top level)"
    _PHASES[folder] = _PHASES.get(folder, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if len(_PHASES) <= 1:
        return
    tests = {k: v for k, v in _PHASES.items() if k != "collection"}
    browser = tests.get("browser", 0.0)
    lines = [f"collection {_PHASES.get('collection', 0.0):.1f} s"]
    lines += [f"{name} {seconds:.1f} s" for name, seconds in sorted(tests.items())]
    lines += [
        f"non-browser tests {sum(tests.values()) - browser:.1f} s, browser tests {browser:.1f} s",
    ]
    terminalreporter.write_sep("=", "phase times")
    for line in lines:
        terminalreporter.write_line(line)
