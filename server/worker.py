"""gunicorn's threaded worker, hardened for tills on slow networks and hostile clients.

- **A deadline for reading each request.** gunicorn waits for a connection's first byte
  without holding a thread, but then reads headers and body with blocking calls and no
  limit: a client sending a byte a second holds a worker thread for ever, and a few of them
  stop the server. Here every read of one request must be done by
  :data:`REQUEST_READ_SECONDS` after its first byte; a request that is not is answered 408
  and its connection closed, freeing the thread.
- **Its own errors in the API's JSON shape** (``{"error": {"code", "message"}}``): a request
  line too long, a header too large, a malformed request — not gunicorn's HTML page.
"""
from __future__ import annotations

import json
import socket
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from .errors import RequestTooSlow

#: Seconds to read one request, headers and body, from its first byte: a till's receipt is
#: a few kilobytes, a batch at most MAX_BATCH_BYTES; both arrive well within this on any link
#: a till works on.
REQUEST_READ_SECONDS = 10.0
#: Seconds a response may take to leave (a client that stops reading its answer).
RESPONSE_WRITE_SECONDS = 30.0


class DeadlineSocket:
    """A connection's socket whose reads of one request must finish by a deadline.

    gunicorn's request parser reads only through ``recv``; everything else (the poller's
    ``fileno``, closing) goes to the real socket. A timeout gunicorn sets itself (draining
    an unread body after the answer) is kept, and the shorter of the two applies; once the
    answer has been sent, running out of time only ends the connection.
    """

    def __init__(self, sock: socket.socket, seconds: float):
        self._sock, self._seconds = sock, seconds
        self._timeout: float | None = sock.gettimeout()  # as gunicorn last set it
        self.restart()

    def restart(self) -> None:
        """A new request on this connection (keep-alive): a new deadline."""
        self._deadline = time.monotonic() + self._seconds
        self._answered = False

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        self._sock.settimeout(value)

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0
        self._sock.setblocking(flag)

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv(self, size: int, *flags) -> bytes:
        if self._timeout == 0.0:  # non-blocking, for the poller: no waiting to bound
            return self._sock.recv(size, *flags)
        left = self._deadline - time.monotonic()
        ours = self._timeout is None or left < self._timeout
        if left <= 0:
            raise socket.timeout() if self._answered else RequestTooSlow()
        self._sock.settimeout(left if ours else self._timeout)
        try:
            return self._sock.recv(size, *flags)
        except socket.timeout:
            if ours and not self._answered:
                raise RequestTooSlow() from None
            raise
        finally:
            self._sock.settimeout(self._timeout)

    def sendall(self, data, *flags) -> None:
        self._answered = True
        self._sock.settimeout(RESPONSE_WRITE_SECONDS if not self._timeout else self._timeout)
        try:
            self._sock.sendall(data, *flags)
        finally:
            self._sock.settimeout(self._timeout)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class Worker(ThreadWorker):
    """``gthread`` with a read deadline per request (module docstring)."""

    #: set by ``fidelis serve --read-timeout`` before the workers start
    read_seconds: float = REQUEST_READ_SECONDS

    def handle(self, conn):
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.restart()
        elif not conn.initialized:  # before the parser takes the socket
            conn.sock = DeadlineSocket(conn.sock, self.read_seconds)
        return super().handle(conn)

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, RequestTooSlow):
            self.log.warning("request from %s not sent within %g s; answered 408", (addr or ("",))[0],
                             self.read_seconds)
            try:
                write_json_error(client, 408, "Request Timeout", "request_timeout",
                                 f"the request was not sent within {self.read_seconds:g} s")
            except OSError:
                pass
            return
        super().handle_error(req, client, addr, exc)


_CODES = {400: "bad_request", 403: "forbidden", 408: "request_timeout", 414: "request_line_too_long",
          417: "expectation_failed", 431: "headers_too_large", 500: "internal_error", 501: "not_implemented"}


def write_json_error(sock, status: int, reason: str, code: str | None = None, message: str | None = None) -> None:
    """An error response in the API's shape, straight to the socket; the connection closes."""
    body = json.dumps({"error": {"code": code or _CODES.get(status, "bad_request"),
                                 "message": message or reason.lower()}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


def _gunicorn_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error pages (util.write_error), in the API's JSON shape."""
    write_json_error(sock, status_int, reason, message=mesg or reason.lower())


def install_json_errors() -> None:
    """Make gunicorn answer its own errors in JSON, in this process (``fidelis serve``'s)."""
    util.write_error = _gunicorn_error
