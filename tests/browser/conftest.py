"""Fixtures for the end-to-end browser tests: the real service as a process on
loopback, Debian's Chromium driven by Playwright, and a fresh page per test
that records console errors and page errors.

The service authenticates every caller. Each test database holds an office
user (``USERNAME``) and the tests' backend client: the JSON helpers call as
that client (a bearer token), the pages as that user, signed in through the
portal's own sign-in form.

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
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    StorageState,
    ViewportSize,
    expect,
    sync_playwright,
)

from service.store import open_store
from tests.support.callers import PASSWORD, add_user, bearer, register_in
from tests.support.paths import FIXTURES

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
VIEWPORT: ViewportSize = {"width": 1200, "height": 900}
# LHC-Forms logs this when no FHIR server context is set; the portal needs none
KNOWN_MESSAGES = ("LForms.Util.setFHIRContext()",)
USERNAME = "office"  # the portal user of each test database (organization clinic-a)
# access tokens live five minutes: a fresh one well before that
TOKEN_SECONDS = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """The running service: its base URL and small JSON helpers over HTTP,
    which call as the tests' backend client (SMART Backend Services)."""

    url: str
    log: Path
    _token: dict[str, str] = field(default_factory=dict, repr=False)
    _token_at: float = field(default=0.0, repr=False)

    def authorization(self) -> dict[str, str]:
        """The bearer token header, fetched again when it is near its end."""
        if not self._token or time.monotonic() - self._token_at > TOKEN_SECONDS:
            self._token = bearer(self.url)
            self._token_at = time.monotonic()
        return self._token

    def get_json(self, path: str) -> Any:
        request = urllib.request.Request(self.url + path, headers=self.authorization())
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read())

    def post_fhir(self, path: str, resource: dict[str, Any]) -> tuple[int, Any]:
        """POST a resource as application/fhir+json; (status, JSON body), errors included."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(resource).encode(),
            headers={
                "Content-Type": "application/fhir+json",
                "Accept": "application/fhir+json",
                **self.authorization(),
            },
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
    """`python -m dtr serve` on 127.0.0.1, a free port and a fresh SQLite file
    holding the office user and the tests' backend client."""
    if not LFORMS_VERSION.exists():
        pytest.fail(
            f"LHC-Forms is not installed ({LFORMS_VERSION} is missing): run scripts/install-lforms",
            pytrace=False,
        )
    port = _free_port()
    log = folder / "server.log"
    database = folder / "audit.sqlite3"
    store = open_store(str(database))
    try:
        add_user(store, USERNAME)
    finally:
        store.close()
    register_in(str(database))
    command = [
        sys.executable, "-m", "dtr", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--db", str(database), *extra,
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
    folder = FIXTURES / "constructs"
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


def new_context(browser: Browser, state: StorageState | None = None) -> BrowserContext:
    """A fresh browser context (signed in when given a signed-in state)."""
    context = browser.new_context(
        viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
        storage_state=state,
    )
    context.set_default_timeout(10_000)
    return context


def watched(context: BrowserContext, problems: Problems) -> Page:
    """A new page of the context whose console and page errors go to ``problems``."""
    opened = context.new_page()
    opened.on("console", problems.console)
    opened.on("pageerror", problems.page_error)
    return opened


def submit_sign_in(page: Page, username: str, password: str) -> None:
    """Fill the sign-in form on the page and send it, as a person would."""
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin button[type=submit]")


class Sessions:
    """One signed-in session per service, opened through the portal's sign-in
    form and shared by every test's fresh context (as its cookie). The
    service allows a few sign-in attempts a minute per address: signing in
    again for each test would be throttled."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.states: dict[str, StorageState] = {}

    def state(self, service: Service) -> StorageState:
        if service.url not in self.states:
            self.states[service.url] = self._sign_in(service)
        return self.states[service.url]

    def _sign_in(self, service: Service) -> StorageState:
        problems = Problems()
        context = new_context(self.browser)
        try:
            page = watched(context, problems)
            page.goto(service.url + "/")  # the portal sends a stranger to sign in
            expect(page).to_have_url(f"{service.url}/signin?next=%2F")
            submit_sign_in(page, USERNAME, PASSWORD)
            expect(page).to_have_url(service.url + "/")
            expect(page.locator("#signed-in")).to_contain_text(USERNAME.title())
            state = context.storage_state()
        finally:
            context.close()
        if problems.errors:
            pytest.fail(
                "signing in, the pages reported errors:\n" + "\n".join(problems.errors),
                pytrace=False,
            )
        return state


@pytest.fixture(scope="session")
def sessions(browser: Browser) -> Sessions:
    return Sessions(browser)


@pytest.fixture()
def page(
    browser: Browser, sessions: Sessions, page_problems: Problems, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser context signed in as the office user, to the service the
    test uses (``fixture_service`` if it asks for it, else ``service``), and a
    page; fails the test on any console error or page error."""
    name = "fixture_service" if "fixture_service" in request.fixturenames else "service"
    target: Service = request.getfixturevalue(name)
    context = new_context(browser, sessions.state(target))
    opened = watched(context, page_problems)
    try:
        yield opened
    finally:
        context.close()
    if page_problems.errors:
        pytest.fail("the page reported errors:\n" + "\n".join(page_problems.errors), pytrace=False)
