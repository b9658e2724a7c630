"""An HTTP client whose every request ends by a total deadline and whose replies have a size cap: what httpx2's own
settings do not give.

httpx2's timeouts bound each operation: a read waits at most `read` seconds for *some* bytes, so a server that sends
a byte now and then keeps a request going for as long as it likes. Here a timer shuts the request's socket down at its
deadline, which ends a read or write blocked on it at once, in every phase: connecting, sending, waiting for the
headers, reading the body. The socket is found through httpcore's `trace` extension when the connection is made, so
keep-alive is off: every request makes its own connection (a reused one was made before its request, unseen). A copy
of the socket's descriptor is kept, since TLS takes the socket object over; `shutdown` acts on the connection behind
both.

A reply is counted as it arrives and refused once it passes `max_bytes`, error replies included (the openai client
reads those whole). Compressed replies are not asked for and are refused if sent anyway, so the bytes counted are the
bytes kept in memory.

httpx2 comes with the `openai` extra: import this module only where that extra is in use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx2


class ReplyRefused(Exception):
    """A reply larger than the cap, or compressed though asked not to be."""


class _Attempt:
    """One request: its socket once connected, and whether its deadline passed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.expired = False

    def trace(self, event: str, info: dict) -> None:
        # httpcore names it connection.connect_tcp.complete, and socks.connect_tcp.complete through a SOCKS proxy
        if not event.endswith(".connect_tcp.complete") or info.get("return_value") is None:
            return
        connected = info["return_value"].get_extra_info("socket")
        duplicate = connected.dup()
        with self._lock:
            self._socket = duplicate
            expired = self.expired
        if expired:  # the deadline passed while connecting
            self._shut()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
        self._shut()

    def _shut(self) -> None:
        with self._lock, contextlib.suppress(OSError):
            if self._socket is not None:
                self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()


class _Capped(httpx2.SyncByteStream):
    def __init__(self, stream: httpx2.SyncByteStream, max_bytes: int):
        self._stream, self._max_bytes = stream, max_bytes

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._stream:
            received += len(chunk)
            if received > self._max_bytes:
                raise ReplyRefused(f"reply larger than {self._max_bytes} bytes (endpoint.max_reply_bytes)")
            yield chunk

    def close(self) -> None:
        self._stream.close()


class BoundedHTTP:
    """Makes the client (`client()`) and bounds each request made inside `request()` in the calling thread."""

    def __init__(self, total_s: float, max_bytes: int):
        self.total_s, self.max_bytes = total_s, max_bytes
        self._local = threading.local()

    def client(self) -> httpx2.Client:
        return httpx2.Client(timeout=self.total_s, limits=httpx2.Limits(max_keepalive_connections=0),
                             headers={"Accept-Encoding": "identity"},
                             event_hooks={"request": [self._on_request], "response": [self._on_response]})

    @contextlib.contextmanager
    def request(self) -> Iterator[_Attempt]:
        """The span of one request: its socket is shut down when `total_s` has passed; `expired` then says so."""
        attempt = _Attempt()
        timer = threading.Timer(self.total_s, attempt.expire)
        timer.daemon = True
        self._local.attempt = attempt
        timer.start()
        try:
            yield attempt
        finally:
            timer.cancel()
            self._local.attempt = None
            attempt.close()

    def _on_request(self, request: httpx2.Request) -> None:
        attempt = getattr(self._local, "attempt", None)
        if attempt is not None:
            request.extensions["trace"] = attempt.trace

    def _on_response(self, response: httpx2.Response) -> None:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ReplyRefused(f"the reply is compressed ({encoding[:20]}) though it was asked not to be")
        response.stream = _Capped(response.stream, self.max_bytes)
