"""Serving the app with uvicorn, plus a header read timeout uvicorn lacks and
an OperationOutcome for the requests uvicorn refuses before the app sees them.

uvicorn bounds an idle keep-alive connection (``timeout_keep_alive``) but not
the time a client takes to send a request's headers: a fresh connection that
sends nothing, or a request line and headers dribbled out and never finished
(slowloris), is held open for as long as the client likes, each one a socket
and a file descriptor. Enough of them and the service stops accepting anyone.
The body already has its bound (``service.http``, ``DTR_BODY_TIMEOUT``); this
module bounds the headers (``DTR_HEADER_TIMEOUT``).

It does so with a subclass of uvicorn's h11 protocol (the one uvicorn picks
when httptools is not installed, forced here so the hook always applies): a
timer armed when the connection is made, and again when the first bytes of a
later request on a keep-alive connection arrive, cancelled once h11 has parsed
the request's headers. On expiry the connection is closed, with a bare 408 if
the client had started a request.

A request h11 cannot parse (a NUL byte in a header, a malformed request line
or header, a bad Content-Length) never reaches the app: uvicorn answers it
itself with a plain-text ``400 Invalid HTTP request received.`` Every other
error of the service is an OperationOutcome, so the same protocol answers
this one as the app would: a 400 ``application/fhir+json`` OperationOutcome,
with the service's security headers and a request id in the request log.
What was sent is never echoed or logged (it may carry a name or a member id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import replace

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

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


class ServiceProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers, and
    a FHIR answer to a request h11 refuses."""

    header_timeout: float = 10.0  # seconds; set per server by ``protocol_class``

    _header_timer: asyncio.TimerHandle | None = None

    # the ignore as on uvicorn's own: asyncio declares BaseTransport, uvicorn needs a Transport
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn sets no timer on a fresh connection: the first request's
        # headers are due within the timeout, whether or not any byte comes
        self._arm_header_timer()

    def handle_events(self) -> None:
        # handle_events runs for every chunk received (data_received) and for
        # requests a pipelining client queued (on_response_complete); after
        # it, h11's state says whether a request's headers are complete
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            # a request was parsed (its body, if any, has DTR_BODY_TIMEOUT),
            # or the connection failed or closed: no deadline for headers now
            self._cancel_header_timer()
        elif self.conn.trailing_data[0]:
            # part of a request is buffered, headers not complete. On a
            # keep-alive connection uvicorn's keep-alive timer was cancelled by
            # these bytes (data_received), so nothing else bounds the rest.
            # Armed once: the deadline runs from the request's first bytes,
            # not from the latest, or a client could stretch it a byte at a time
            self._arm_header_timer()
        # else: IDLE with nothing buffered. On a fresh connection the timer
        # from connection_made runs; between keep-alive requests the idle
        # connection is uvicorn's (timeout_keep_alive), as it is without us

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
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return  # already closing, or the headers came in the same loop turn
        if self.conn.trailing_data[0]:
            # the client started a request: tell it why it is cut off. h11
            # lets a server answer before a request is parsed (uvicorn's 400
            # for a malformed one does the same); no body, so that the client
            # has nothing left to wait for. A client that sent nothing gets no
            # 408, as an idle keep-alive connection gets none from uvicorn
            reason = b"Request Timeout"
            headers = [(b"content-length", b"0"), (b"connection", b"close")]
            for event in (
                h11.Response(status_code=408, headers=headers, reason=reason),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event) or b"")  # None only for ConnectionClosed
        # closing flushes the write buffer first; connection_lost follows
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this when h11 raises RemoteProtocolError on what the
        # client sent; its msg is uvicorn's fixed text, not the request's
        self._cancel_header_timer()
        rid = uuid.uuid4().hex
        body = json.dumps(operation_outcome([MALFORMED])).encode()
        headers = [
            (b"content-type", FHIR_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", rid.encode()),
            *((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()),
        ]
        events = (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        try:
            for event in events:
                self.transport.write(self.conn.send(event) or b"")
        except h11.LocalProtocolError:
            # a response of ours was already under way on this connection
            # (a pipelined request broke mid-reply): nothing more can be said
            pass
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
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.announce(f"http://{f'[{host}]' if ':' in host else host}:{port}")


def run(app: FastAPI, settings: Settings, announce: Callable[[str], None] | None = None) -> None:
    """Serve the app until interrupted, as ``dtr serve`` does; ``announce``
    gets the URL it listens on once it does. With ``--port 0`` and no public
    URL configured, the public URL (token audience, ``Location``, the token
    endpoint the SMART configuration names) is the one bound, not port 0."""

    def bound(url: str) -> None:
        if settings.port == 0 and not settings.base_url:
            service = app.state.service
            service.settings = replace(service.settings, base_url=url)
        if announce is not None:
            announce(url)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        http=protocol_class(settings.header_timeout),
    )
    _Server(config, bound).run()
