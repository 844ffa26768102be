"""Serving the app with uvicorn on one or more worker processes, plus a
header read timeout uvicorn lacks and an OperationOutcome for the requests
uvicorn refuses before the app sees them.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not
the time a client takes to send a request's headers: a fresh connection that
sends nothing, or a request line and headers dribbled out and never finished
(slowloris), is held open for as long as the client likes, each one a socket
and a file descriptor. Enough of them and the service stops accepting anyone.
The body already has its bound (``service.http``, ``DTR_BODY_TIMEOUT``); this
module bounds the headers (``DTR_HEADER_TIMEOUT``).

It does so with a subclass of uvicorn's httptools protocol (llhttp, the
parser of Node.js, in C, where h11 parses in Python: h11 and asyncio cost
about 1 ms of CPU a request when the service was profiled on them; the load
figures since are in docs/operations.md): a timer armed
when the connection is made, and again when the parser meets the first byte
of a later request on a keep-alive connection (``on_message_begin``),
cancelled once the request's headers are parsed (``on_headers_complete``).
On expiry the connection is closed, with a bare 408 if the client had
started a request.

A request the parser cannot read (a NUL byte in a header, a malformed
request line or header, a bad Content-Length, a request line with no HTTP/1.x
version) never reaches the app: uvicorn
answers it itself with a plain-text ``400 Invalid HTTP request received.``
Every other error of the service is an OperationOutcome, so the same
protocol answers this one as the app would: a 400 ``application/fhir+json``
OperationOutcome, with the service's security headers and a request id in
the request log. What was sent is never echoed or logged (it may carry a
name or a member id).

``DTR_WORKERS`` (``dtr serve --workers``) runs that many processes on one
port, each listening on its own socket (``SO_REUSEPORT``: the kernel spreads
the connections), the address held by the parent, which restarts a worker
that dies and stops them all on SIGTERM or Ctrl-C. The processes share the store,
and through it the token secret, the sessions and the replay table; each keeps
its own rate limiter, so a client whose connections land on several workers
gets up to that many times ``DTR_RATE_LIMIT`` (a keep-alive connection stays
on one). On SQLite the store takes one writer at a time across the processes
(``service.store.SQLiteConnections``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scoring.outcome import Issue, operation_outcome
from service.http import FHIR_JSON
from service.middleware import SECURITY_HEADERS
from service.settings import Settings

log = logging.getLogger("dtr.service")
MALFORMED = Issue(
    "structure",
    "the request is not valid HTTP/1.1 (its request line or a header is malformed,"
    " e.g. a control character in a header): nothing was done",
)
# no body, so that the client has nothing left to wait for
REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class ServiceProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's
    headers, and a FHIR answer to a request the parser refuses."""

    header_timeout: float = 10.0  # seconds; set per server by ``protocol_class``

    _header_timer: asyncio.TimerHandle | None = None
    # the parser has met a request's first byte and not yet all its headers
    _in_headers = False

    # the ignore as on uvicorn's own: asyncio declares BaseTransport, uvicorn needs a Transport
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn sets no timer on a fresh connection: the first request's
        # headers are due within the timeout, whether or not any byte comes
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # a request's first byte. On a keep-alive connection uvicorn's
        # keep-alive timer was cancelled by these bytes (data_received), so
        # nothing else bounds the rest. Armed once: the deadline runs from the
        # request's first byte, not from the latest, or a client could stretch
        # it a byte at a time
        self._in_headers = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        # the request's headers are in (its body, if any, has DTR_BODY_TIMEOUT)
        self._in_headers = False
        self._cancel_header_timer()
        if self.parser.get_http_version() not in ("1.0", "1.1"):
            # llhttp reads a request line with no version as HTTP/0.9, which
            # has no headers and no status line to answer with. Raised here,
            # the parser reports it as an error (HttpParserCallbackError, an
            # HttpParserError), and uvicorn calls send_400_response
            raise ValueError("not an HTTP/1.x request")
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request behind one still being answered: uvicorn
            # stopped reading until that answer is sent, so the rest of these
            # headers may be waiting in the socket, not late. Judge later
            self._arm_header_timer()
            return
        if self._in_headers:
            # the client started a request: tell it why it is cut off, as
            # uvicorn answers a malformed one before it is parsed. A client
            # that sent nothing gets no 408, as an idle keep-alive connection
            # gets none from uvicorn
            self.transport.write(REQUEST_TIMEOUT)
        # closing flushes the write buffer first; connection_lost follows
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this when the parser refuses what the client sent;
        # its msg is uvicorn's fixed text, not the request's
        self._cancel_header_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request broke while an answer of ours is under way
            # on this connection: nothing more can be said without garbling
            # it; the connection closes once that answer is sent
            self.cycle.keep_alive = False
            return
        rid = uuid.uuid4().hex
        body = json.dumps(operation_outcome([MALFORMED])).encode()
        headers = [
            ("content-type", FHIR_JSON),
            ("content-length", str(len(body))),
            ("connection", "close"),
            ("x-request-id", rid),
            *((name.lower(), value) for name, value in SECURITY_HEADERS.items()),
        ]
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n" + head.encode() + b"\r\n" + body)
        log.info("%s (unparsed request) (no route) 400", rid)
        self.transport.close()


def protocol_class(header_timeout: float) -> type[ServiceProtocol]:
    """The protocol with this server's timeout. uvicorn builds protocols from
    a class with fixed arguments, so the setting travels as a class attribute."""

    class Protocol(ServiceProtocol):
        pass

    Protocol.header_timeout = header_timeout
    return Protocol


class _Server(uvicorn.Server):
    """uvicorn's server, telling the caller where it listens once it does:
    with ``--port 0`` only the bound socket knows the port."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[str], None] | None) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.announce is not None and self.servers:
            self.announce(_url(self.servers[0].sockets[0]))


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        http=protocol_class(settings.header_timeout),
        # libuv's event loop, in C, in place of asyncio's (see the module docstring)
        loop="uvloop",
    )


def run(app: FastAPI, settings: Settings, announce: Callable[[str], None] | None = None) -> None:
    """Serve the app until interrupted, as ``dtr serve`` does; ``announce``
    gets the URL it listens on once it does. With ``--port 0`` and no public
    URL configured, the public URL (token audience, ``Location``, the token
    endpoint the SMART configuration names) is the one bound, not port 0.

    With ``settings.workers`` above 1, this process holds the address, then
    only watches the workers (:func:`_supervise`); each listens on the port
    with its own socket, then builds its own app from the same settings (the
    catalog from its cache, ``qpackage.cache``). The URL is announced once
    every worker listens. ``app`` has verified that the policies load and
    migrated the store before any worker starts."""
    if settings.workers > 1:
        sock = _bind(settings)
        url = _url(sock)
        if settings.port == 0 and not settings.base_url:
            settings = replace(settings, base_url=url)
        app.state.store.close()  # this process serves nothing
        _supervise(settings, sock, lambda: announce(url) if announce is not None else None)
        return

    def bound(url: str) -> None:
        if settings.port == 0 and not settings.base_url:
            service = app.state.service
            service.settings = replace(service.settings, base_url=url)
        if announce is not None:
            announce(url)

    _Server(_config(app, settings), bound).run()


def _bind(settings: Settings) -> socket.socket:
    """The service's address, held by this process while the workers serve
    it: bound (``SO_REUSEPORT``), never listening, so the port is taken from
    the start, known with ``--port 0`` and kept while a worker is replaced;
    the connections go to the workers' listening sockets (:func:`_listen`)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = _reusable(family)
    sock.bind((settings.host, settings.port))
    return sock


def _reusable(family: socket.AddressFamily) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # only sockets of this user may join the port (Linux)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listen(family: socket.AddressFamily, address: tuple[object, ...]) -> socket.socket:
    """A worker's own listening socket on the service's port: the kernel
    spreads new connections over the workers' sockets by a hash of each
    connection's addresses. With one socket shared by all, the worker that
    woke first took every connection waiting: wrk's 32 connections, opened
    at once, all went to one of two workers (588 determinations/s, one core
    busy, against 933/s at 64 clients that happened to split). The price: a
    connection still waiting in a worker's queue when that worker dies is
    reset (its client connects again), where one shared queue kept it for
    the other workers."""
    sock = _reusable(family)
    sock.bind(address)
    sock.listen(2048)
    return sock


def _worker(
    settings: Settings,
    family: socket.AddressFamily,
    address: tuple[object, ...],
    listening: multiprocessing.synchronize.Event,
) -> None:
    """One worker process: its own app over the same store, on the service's
    port. It listens first and says so (``listening``): a connection made
    while the app is built waits in its queue."""
    from service.app import create_app  # the app module imports this one

    threading.Thread(target=_orphaned, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sock = _listen(family, address)
    listening.set()
    app = create_app(settings)
    _Server(_config(app, settings), None).run(sockets=[sock])


def _orphaned(parent: int) -> None:
    """Stop this worker once the process that started it is gone: killed
    (SIGKILL), the parent cannot stop its workers, which would otherwise
    keep serving on the socket with no one to restart or stop them."""
    while os.getppid() == parent:
        time.sleep(1)
    log.warning("the supervising process is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown


Listening = multiprocessing.synchronize.Event
QUICK_EXIT = 5.0  # seconds: a worker that dies sooner after starting failed to start
QUICK_EXITS = 3  # failures to start in a row that stop the service


def _supervise(settings: Settings, sock: socket.socket, listening: Callable[[], None]) -> None:
    """Start ``settings.workers`` workers, call ``listening`` once all of
    them listen, and keep that many running until SIGTERM or SIGINT, then
    stop them (uvicorn's graceful shutdown: requests under way are answered)
    and return. A worker that dies is replaced; one that keeps dying as it
    starts (a store it cannot open, say) stops the service with exit status
    1 rather than restarting forever."""
    # spawn, not fork: a fresh interpreter with no threads or open database
    # connections of this process's (it listens on the address given)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    where = (sock.family, sock.getsockname())
    said = False

    def start() -> tuple[multiprocessing.process.BaseProcess, float, Listening]:
        ready = context.Event()
        process = context.Process(target=_worker, args=(settings, *where, ready), name="dtr-worker")
        process.start()
        return process, time.monotonic(), ready

    def stop(_signal: int, _frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    workers = [start() for _ in range(settings.workers)]
    quick = 0
    try:
        while not stopping.is_set() and quick < QUICK_EXITS:
            if not said and all(ready.is_set() for _, _, ready in workers):
                said = True
                listening()
            timeout = 0.5 if said else 0.05
            multiprocessing.connection.wait([p.sentinel for p, _, _ in workers], timeout=timeout)
            for n, (process, started, _) in enumerate(workers):
                if process.is_alive() or stopping.is_set():
                    continue
                quick = quick + 1 if time.monotonic() - started < QUICK_EXIT else 0
                log.warning(
                    "worker %s exited with status %s; starting another",
                    process.pid,
                    process.exitcode,
                )
                workers[n] = start()
    finally:
        for process, _, _ in workers:
            process.terminate()
        for process, _, _ in workers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join()
        for number, handler in previous.items():
            signal.signal(number, handler)
        sock.close()
    if quick >= QUICK_EXITS:
        log.error("workers exit as they start: stopping")
        raise SystemExit(1)
