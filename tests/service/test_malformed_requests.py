"""The real server process against requests its HTTP parser refuses before
the app sees them (a NUL byte in a header, a malformed request line or
header, a bad Content-Length): each gets a 400 FHIR OperationOutcome, as
every other error does, never uvicorn's plain-text answer, and nothing of
what was sent comes back. The server goes on serving."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.support.server import Server, answer_then_eof

NAME = b"Quackenbush"  # a patient's name in what is sent: never in the answer
MALFORMED = {
    "NUL in Content-Type": b"POST /QuestionnaireResponse/$evaluate HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/fhir+json\x00" + NAME + b"\r\nContent-Length: 2\r\n\r\n{}",
    "request line with no version": b"GET /Patient/" + NAME + b"\r\nHost: x\r\n\r\n",
    "request line with spaces in the target": b"GET /Patient/" + NAME + b" x HTTP/1.1\r\n\r\n",
    "header without a colon": b"GET /metadata HTTP/1.1\r\nHost: x\r\nPatient " + NAME + b"\r\n\r\n",
    "Content-Length not a number": b"POST /QuestionnaireResponse/$evaluate HTTP/1.1\r\n"
    b"Host: x\r\nContent-Length: " + NAME + b"\r\n\r\n",
    "not HTTP at all": b"\x16\x03\x01\x00\xa5" + NAME + b"\r\n\r\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("malformed") / "store.sqlite3").start()
    yield running
    running.stop()


@pytest.mark.parametrize("sent", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_request_the_parser_refuses_gets_an_operation_outcome(
    server: Server, sent: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(sent)
        answer = answer_then_eof(conn)  # and the server closes the connection
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert status == "HTTP/1.1 400 Bad Request", answer[:300]
    assert headers["content-type"] == "application/fhir+json"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert len(headers["x-request-id"]) == 32
    assert int(headers["content-length"]) == len(body)
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    (issue,) = outcome["issue"]
    assert (issue["severity"], issue["code"]) == ("error", "structure")
    assert "not valid HTTP/1.1" in issue["diagnostics"]
    assert NAME not in answer
    # the next client is served as usual
    assert httpx.get(f"{server.url}/metadata", timeout=5).status_code == 200
