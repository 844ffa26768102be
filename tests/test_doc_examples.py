"""Every shell example of README.md and docs/*.md runs as written.

Each ```sh block runs in bash, in document order, against a real server
(`dtr serve --port 0`) over a temporary store, in a temporary working
directory: a reader's checkout as far as the examples reach — copies of
``examples/`` and of the bundled policies with their generated files
(``DTR_POLICIES`` points at the copy, so ``dtr build`` writes there and never
into the checkout), ``.venv`` linked, ``dtr`` on the PATH as after
``source .venv/bin/activate``. How the placeholders are bound is in
docs/testing.md ("The shell examples run as written"); in short:

- ``http://127.0.0.1:8080`` (and ``$B``) is the test's server;
- the blocks marked ``setup`` (docs/api.md: the backend client ``my-ehr``
  and a pharmacist's session) run first, once, and bind ``$T``, ``$A``,
  ``$P`` and ``$C`` for every other block (``$T`` fresh for each document);
- ``{id}`` is a request submitted just before the block, as ``my-ehr``:
  examples/eocco329-initial-approved.json above the quantity limit, so it
  waits for a pharmacist (QL not met); ``{document}`` is its KRAS report;
- a ``dtr serve`` line is started in the background on a free port, the URL
  in the lines after it bound to that server, and stopped after the block;
- in a transcript block (lines starting ``$ ``) only those lines run, the
  rest being the output shown.

A block passes when bash exits 0 and every HTTP status a ``curl`` got is
below 400 (or one the block's marker says it shows). A block that cannot
run here carries an HTML comment right above it, ``<!-- example: not run —
why -->``, and is reported as skipped with that reason: none is left out
silently.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.support.paths import ROOT
from tests.support.server import free_port
from tests.test_docs import _blocks, _walkthrough

DOCUMENTS = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
WRITTEN_URL = "http://127.0.0.1:8080"  # the URL the examples are written for
BOUND = ("T", "A", "P", "C")  # what the setup blocks bind for the others
BLOCK_SECONDS = 300  # a block running longer has hung

_FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
_MARKER = re.compile(r"<!--\s*example:\s*(.*?)\s*-->", re.S)  # on the lines right above
_VERB = re.compile(r"(not run|setup|shows (?P<status>\d{3}))\s+—\s+(?P<why>\S.*)", re.S)
_STATUS = re.compile(r"^example: HTTP (\d{3}) (\S+)$", re.M)
_SERVE = re.compile(r"^((?:\.venv/bin/)?dtr serve\b.*)$")


@dataclass(frozen=True)
class Example:
    document: str
    line: int
    text: str
    verb: str  # "run", "not run", "setup" or "shows"
    why: str = ""
    shows: int | None = None

    @property
    def name(self) -> str:
        return f"{self.document}:{self.line}"


def examples(document: str) -> list[Example]:
    """The ``sh`` blocks of a document, each with the marker right above it."""
    text = (ROOT / document).read_text(encoding="utf-8")
    found = []
    for block in _FENCE.finditer(text):
        line = text.count("\n", 0, block.start()) + 1
        before = text[: block.start()].rstrip()
        comment = before[before.rfind("\n<!--") + 1 :] if before.endswith("-->") else ""
        marker = _MARKER.fullmatch(comment)
        if marker is None:
            found.append(Example(document, line, block.group(1), "run"))
            continue
        verb = _VERB.fullmatch(marker.group(1))
        assert verb, (
            f"{document}:{line}: a marker is 'not run — why', 'setup — why' or 'shows NNN — why'"
        )
        status = verb.group("status")
        found.append(
            Example(
                document, line, block.group(1),
                "shows" if status else verb.group(1), " ".join(verb.group("why").split()),
                int(status) if status else None,
            )
        )  # fmt: skip
    return found


EXAMPLES = {document: examples(document) for document in DOCUMENTS}
MARKED = [e for found in EXAMPLES.values() for e in found if e.verb == "not run"]


# --- turning a block into the script that runs it -----------------------------------------

PRELUDE = r"""
set -e -o pipefail
# every curl reports its status (on stderr, apart from what the example prints)
curl() { command curl -sS -w '%{stderr}example: HTTP %{http_code} %{url_effective}\n' "$@"; }
served=()
trap 'for pid in "${served[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
serve() {  # serve PORT dtr serve …: in the background, on PORT; back once it listens
  local port=$1; shift
  "$@" --port "$port" >"var/serve-$port.out" 2>&1 &
  served+=($!)
  for _ in $(seq 300); do
    grep -q 'serving on' "var/serve-$port.out" 2>/dev/null && { cat "var/serve-$port.out"; return 0; }
    kill -0 "$!" 2>/dev/null || { cat "var/serve-$port.out"; return 1; }
    sleep 0.1
  done
  return 1
}
"""


def commands(text: str) -> list[str]:
    """The lines that run: all of them, or in a transcript only the ``$ `` lines
    (with the lines they continue onto)."""
    lines = text.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        return lines
    kept: list[str] = []
    continued = False
    for line in lines:
        if continued:
            kept.append(line)
        elif line.startswith("$ "):
            kept.append(line[2:])
        else:
            continue  # the output shown
        continued = line.rstrip().endswith("\\")
    return kept


def script(example: Example, url: str, ids: dict[str, str]) -> str:
    """The block as bash runs it: the placeholders bound, a ``dtr serve`` line
    in the background on a port of its own, the written URL the server's (after
    a ``dtr serve`` line, that one's)."""
    out = []
    for line in commands(example.text):
        for name, value in ids.items():
            line = line.replace("{" + name + "}", value)
        serve = _SERVE.match(line.strip())
        if serve:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            line = f"serve {port} {serve.group(1)}"
        out.append(line.replace(WRITTEN_URL, url))
    return PRELUDE + "\n".join(out) + "\n"


# --- the reader's checkout, the server, the bindings ----------------------------------------


@dataclass
class Place:
    folder: Path
    url: str
    env: dict[str, str]
    bound: dict[str, str]


def _run(
    place: Place, example: Example, ids: dict[str, str], extra: str = ""
) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        ["bash", "-c", script(example, place.url, ids) + extra],
        cwd=place.folder, env={**place.env, **place.bound},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=BLOCK_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the block's shell and all it started
        out, err = process.communicate()
        pytest.fail(f"{example.name}: still running after {BLOCK_SECONDS} s\n{out}\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode or 0, out, err)


def _check(example: Example, done: subprocess.CompletedProcess[str]) -> None:
    shown = f"{example.name}:\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"exit {done.returncode}: {shown}"
    for status, url in _STATUS.findall(done.stderr):
        allowed = (int(status) < 400 and status != "000") or int(status) == example.shows
        assert allowed, f"HTTP {status} from {url}: {shown}"


def _checkout(folder: Path) -> None:
    """Copies of what the examples read and write; the checkout's .venv linked."""
    shutil.copytree(ROOT / "examples", folder / "examples", ignore=shutil.ignore_patterns("var"))
    shutil.copytree(
        ROOT / "policies", folder / "policies",
        ignore=shutil.ignore_patterns("*.py", "__pycache__"),
    )  # fmt: skip
    shutil.copytree(ROOT / "questionnaires", folder / "policies" / "questionnaires")
    (folder / "var").mkdir()
    (folder / ".venv").symlink_to(ROOT / ".venv")
    (folder / "bin").mkdir()
    (folder / "bin" / "dtr").symlink_to(ROOT / ".venv" / "bin" / "dtr")
    # "Add a policy in ten minutes": the files its steps 1 and 4 write
    guide = _walkthrough()
    (folder / "mypolicies").mkdir()
    (folder / "mypolicies" / "acme-examplinib.yaml").write_text(_blocks(guide, "yaml")[0])
    (folder / "response.json").write_text(_blocks(guide, "json")[0])


def _start(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``dtr serve --port 0``; the URL it says it is serving on."""
    said = folder / "var" / "serve.out"
    with said.open("wb") as out:
        process = subprocess.Popen(
            ["bin/dtr", "serve", "--port", "0"], cwd=folder, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if found := re.search(r"dtr: serving on (http://\S+?)/? ", said.read_text()):
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"dtr serve said {said.read_text()!r}")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Place]:
    folder = tmp_path_factory.mktemp("checkout")
    _checkout(folder)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DTR_") and key not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env.update(PATH=f"{folder / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
    env.update(DTR_POLICIES=str(folder / "policies"))
    process, url = _start(folder, env)
    try:
        here = Place(folder, url, env, {"B": url})
        setups = [e for found in EXAMPLES.values() for e in found if e.verb == "setup"]
        assert setups, "the examples bind $T, $A, $P and $C by the docs' own setup blocks"
        for example in setups:
            keep = "".join(f'\nprintf "%s\\0" "${name}" >>var/bound' for name in BOUND)
            _check(example, _run(here, example, {}, keep))
        values = (folder / "var" / "bound").read_text().split("\0")[:-1]
        # each setup block binds some; the later ones' values win
        for index, value in enumerate(values):
            if value:
                here.bound[BOUND[index % len(BOUND)]] = value
        assert set(here.bound) == {"B", *BOUND}, here.bound
        yield here
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _token(place: Place) -> dict[str, str]:
    """A fresh token for ``my-ehr`` (one lives five minutes), as the docs get one."""
    done = subprocess.run(
        [".venv/bin/python", "examples/backend_client.py", "token", "my-ehr", place.url],
        cwd=place.folder, env=place.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = done.stdout.strip()
    return {"T": token, "A": f"Authorization: Bearer {token}"}


def _request_awaiting_review(place: Place) -> dict[str, str]:
    """``{id}`` and ``{document}``: the approved example asking above the
    limit (a denial citing QL, which EOCCO's pharmacist decides), submitted by
    ``my-ehr``."""
    response = json.loads((ROOT / "examples" / "eocco329-initial-approved.json").read_text())
    response["id"] = f"example-{uuid.uuid4().hex[:12]}"
    for item in response["item"]:
        if item["linkId"] == "QL":
            item["item"][0]["answer"] = [{"valueInteger": 90}]
    name, _, value = place.bound["A"].partition(": ")
    reply = httpx.post(
        f"{place.url}/QuestionnaireResponse/$evaluate", content=json.dumps(response),
        headers={name: value, "Content-Type": "application/fhir+json"},
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    record = reply.headers["location"].rsplit("/", 1)[1]
    cookie, _, session = place.bound["P"].partition(": ")
    case = httpx.get(f"{place.url}/review/cases/{record}", headers={cookie: session})
    assert case.status_code == 200, case.text
    shown = {k: case.json()[k] for k in ("state", "recommended", "statusOf")}
    assert case.json()["state"] == "awaiting-review", shown
    assert case.json()["statusOf"]["QL"] == "not met", shown  # the examples deny citing QL
    [report] = case.json()["attachments"]
    return {"id": record, "document": report["href"].rsplit("/", 1)[1]}


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if EXAMPLES[d]])
def test_the_shell_examples_run_as_written(place: Place, document: str) -> None:
    place.bound.update(_token(place))
    for example in EXAMPLES[document]:
        if example.verb in ("not run", "setup"):
            continue  # reported by the test below / run once by the fixture
        ids = _request_awaiting_review(place) if "{id}" in example.text else {}
        _check(example, _run(place, example, ids))


@pytest.mark.parametrize("example", MARKED, ids=[e.name for e in MARKED])
def test_a_marked_example_says_why_it_is_not_run(example: Example) -> None:
    assert len(example.why) > 10, f"{example.name}: say why it cannot run here"
    pytest.skip(f"{example.name}: not run — {example.why}")


def test_every_block_is_run_or_marked() -> None:
    """The collection itself: the documents hold shell examples, most of them
    run, and a block with a marker not understood fails above (at import)."""
    every = [e for found in EXAMPLES.values() for e in found]
    assert len(every) >= 15
    assert sum(e.verb in ("run", "shows") for e in every) > len(MARKED)


def test_a_failing_example_fails(place: Place) -> None:
    """The checks can fail: a block that exits non-zero, and a curl answered
    with a 4xx, are each a failure."""
    wrong = Example("(test)", 1, "dtr score examples/no-such-file.json\n", "run")
    with pytest.raises(AssertionError, match="exit"):
        _check(wrong, _run(place, wrong, {}))
    refused = Example("(test)", 1, "curl http://127.0.0.1:8080/Questionnaire\n", "run")
    with pytest.raises(AssertionError, match="HTTP 401"):
        _check(refused, _run(place, refused, {}))
