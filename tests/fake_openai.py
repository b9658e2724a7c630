"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for testing clients against failing servers.

`server.handler(request_json) -> Behaviour` decides each reply: an answer, an HTTP error status, a hang, a
closed connection, an invalid JSON body, a reply of the wrong shape, or any of these sent a byte at a time. The server records every request it
received (path, lower-cased headers, JSON body). It runs in a daemon thread; `stop()` ends it and releases
hung handlers.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # a client that hangs up mid-reply (a deadline, a size cap) is what several tests provoke: not worth a traceback
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Behaviour:
    content: str = "ok"  # the answer, in a well-formed chat completion
    status: int = 200  # any other status replies with an OpenAI-style error body
    delay_s: float = 0.0  # wait this long before replying (a hang, when longer than the client's timeout)
    close: bool = False  # drop the connection without a reply
    body: bytes | None = None  # send exactly these bytes as the JSON body (invalid JSON, wrong shape)
    drip_s: float = 0.0  # send the reply one byte every drip_s seconds, its status line and headers too ...
    drip_headers: bool = True  # ... or those at once and only the body byte by byte
    headers: dict[str, str] = field(default_factory=dict)  # more response headers (e.g. Content-Encoding)


def answer(text: str) -> Behaviour:
    return Behaviour(content=text)


def status(code: int) -> Behaviour:
    return Behaviour(status=code)


def hang(seconds: float) -> Behaviour:
    return Behaviour(delay_s=seconds)


def close() -> Behaviour:
    return Behaviour(close=True)


def invalid_json() -> Behaviour:
    return Behaviour(body=b'{"choices": [{"message": {"content": "cut off')


def wrong_shape() -> Behaviour:
    return Behaviour(body=json.dumps({"choices": [{"message": {"content": None}}]}).encode())


def last_user_text(request: dict) -> str:
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


def echo(request: dict) -> Behaviour:
    """The default: answer with the last user turn, so tests can tell replies apart."""
    return answer(f"echo: {last_user_text(request)}")


def completion(content: str, model: str) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class FakeOpenAI:
    def __init__(self):
        self.handler: Callable[[dict], Behaviour] = echo
        self.requests: list[dict] = []  # {"path", "headers", "json"} in arrival order
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._request_handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that are hanging
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, format, *args):  # quiet: the test output is not the place for access logs
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    fake.requests.append({"path": self.path, "headers": headers, "json": request})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._reply(fake.handler(request), request)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _reply(self, behaviour: Behaviour, request: dict):
                stopped = behaviour.delay_s and fake._stopping.wait(behaviour.delay_s)
                if stopped or behaviour.close:
                    self.close_connection = True  # no reply, and no waiting for another request on this socket
                    return
                if behaviour.body is not None:
                    body = behaviour.body
                elif behaviour.status != 200:
                    body = json.dumps({"error": {"message": f"fake error {behaviour.status}",
                                                 "type": "fake", "code": behaviour.status}}).encode()
                else:
                    body = json.dumps(completion(behaviour.content, request.get("model", ""))).encode()
                if behaviour.drip_s:
                    self._drip(behaviour, body)
                    return
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in behaviour.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, behaviour: Behaviour, body: bytes):
                self.close_connection = True
                head = (f"HTTP/1.1 {behaviour.status} X\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode()
                if not behaviour.drip_headers:
                    self.wfile.write(head)
                    head = b""
                for byte in head + body:
                    if fake._stopping.wait(behaviour.drip_s):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                    except OSError:  # the client gave up
                        return

        return Handler
