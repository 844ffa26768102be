"""Fixtures for the end-to-end browser tests: the real service as a process on
loopback, Debian's Chromium driven by Playwright, and a fresh page per test
that records console errors and page errors.

Chromium and the LHC-Forms files are installed by CI; when either is missing
the tests fail (they do not skip), naming what to install.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LFORMS_VERSION = ROOT / "service" / "static" / "lforms" / "VERSION"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_SECONDS = 30
VIEWPORT = {"width": 1200, "height": 900}
# LHC-Forms logs this when no FHIR server context is set; the portal needs none
KNOWN_MESSAGES = ("LForms.Util.setFHIRContext()",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """The running service: its base URL and small JSON helpers over HTTP."""

    url: str
    log: Path

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            return json.loads(reply.read())

    def post_fhir(self, path: str, resource: dict[str, Any]) -> tuple[int, Any]:
        """POST a resource as application/fhir+json; (status, JSON body), errors included."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(resource).encode(),
            headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _serve(folder: Path, *extra: str) -> Iterator[Service]:
    """`python -m dtr serve` on 127.0.0.1, a free port and a fresh SQLite file."""
    if not LFORMS_VERSION.exists():
        pytest.fail(
            f"LHC-Forms is not installed ({LFORMS_VERSION} is missing): run scripts/install-lforms",
            pytrace=False,
        )
    port = _free_port()
    log = folder / "server.log"
    command = [
        sys.executable, "-m", "dtr", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--db", str(folder / "audit.sqlite3"), *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    running = Service(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(running.url + "/metadata"):
            if process.poll() is not None:
                pytest.fail(
                    f"the service exited with status {process.returncode}:\n"
                    + log.read_text(errors="replace"),
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the service did not answer GET /metadata within {STARTUP_SECONDS} s:\n"
                    + log.read_text(errors="replace"),
                    pytrace=False,
                )
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on the bundled policies."""
    yield from _serve(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="session")
def fixture_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on a payer's own folder: the constructs fixture policies."""
    folder = ROOT / "tests" / "policies" / "constructs"
    yield from _serve(tmp_path_factory.mktemp("fixture-service"), "--policies", str(folder))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (the Playwright browser download is not used)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed ({CHROMIUM} is missing): apt-get install chromium",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Problems:
    """Console errors and uncaught page errors seen by one page."""

    errors: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if any(known in text for known in KNOWN_MESSAGES):
            return
        if message.type == "error":
            self.errors.append(f"console.error: {text} ({message.location.get('url', '')})")
        elif message.type in ("warning", "assert"):
            self.other.append(f"console.{message.type}: {text}")

    def page_error(self, error: Error) -> None:
        self.errors.append(f"pageerror: {error.message}")


@pytest.fixture()
def page_problems() -> Problems:
    return Problems()


@pytest.fixture()
def page(browser: Browser, page_problems: Problems) -> Iterator[Page]:
    """A fresh browser context and page; fails the test on any console error or page error."""
    context = browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]}
    )
    context.set_default_timeout(10_000)
    opened = context.new_page()
    opened.on("console", page_problems.console)
    opened.on("pageerror", page_problems.page_error)
    try:
        yield opened
    finally:
        context.close()
    if page_problems.errors:
        pytest.fail("the page reported errors:\n" + "\n".join(page_problems.errors), pytrace=False)
