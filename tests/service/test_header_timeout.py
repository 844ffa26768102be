"""The real server process against clients that never finish their headers
(slowloris) or never send a byte: the others are served meanwhile, and each
stalled connection is closed once DTR_HEADER_TIMEOUT passes."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx2 as httpx

from tests.support.server import Server, answer_then_eof


def one_response(conn: socket.socket) -> bytes:
    """The status line and headers of one response, its body read past."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = conn.recv(4096)
        assert chunk, head
        body += chunk
    return head


def test_stalled_headers_do_not_hold_the_service(tmp_path: Path) -> None:
    server = Server(tmp_path / "headers.sqlite3", {"DTR_HEADER_TIMEOUT": "1"}).start()
    partial: list[socket.socket] = []
    silent: list[socket.socket] = []
    unfinished = b"GET /metadata HTTP/1.1\r\nHost: x\r\n"  # no blank line
    try:
        for _ in range(20):
            conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            conn.sendall(unfinished)
            partial.append(conn)
        # a kept-alive connection: one request answered, the next one stalled
        # (the first bytes stop uvicorn's keep-alive timer; ours takes over)
        kept = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        partial.append(kept)
        kept.sendall(b"GET /metadata HTTP/1.1\r\nHost: x\r\n\r\n")
        assert one_response(kept).startswith(b"HTTP/1.1 200 ")
        kept.sendall(unfinished)
        for _ in range(5):
            silent.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))

        # served while the others hang
        reply = httpx.get(f"{server.url}/metadata", timeout=5)
        assert reply.status_code == 200

        for conn in partial:
            answer = answer_then_eof(conn)
            # a 408 without a body, or a bare close
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
            if answer:
                head, _, body = answer.partition(b"\r\n\r\n")
                assert b"connection: close" in head.lower() and body == b""
        for conn in silent:
            assert answer_then_eof(conn) == b""

        # and the server still serves afterwards
        assert httpx.get(f"{server.url}/metadata", timeout=5).status_code == 200
    finally:
        for conn in partial + silent:
            conn.close()
        server.stop()
