"""A threaded JSON HTTP server on 127.0.0.1 that the stand-ins share: start/stop or a context manager.

A stand-in subclasses `JsonStandIn` and implements `handle(method, path, headers, body)`, returning
(status, json_body or None, headers), or None to drop the connection without answering.
"""

import json
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any, dict[str, str]]


class JsonStandIn:
    """Owns the server thread; subclasses own the state and the routes."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._server = _Server((host, port), _Handler)
        self._server.standin = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer | None:
        raise NotImplementedError

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve from the calling thread (a stand-in run as a script)."""
        self._server.serve_forever(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    standin: JsonStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up mid-answer is part of the tests, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.standin.handle(method, self.path, headers, raw)  # type: ignore[attr-defined]
        if answer is None:
            self.close_connection = True
            return
        status, body, extra = answer
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in {**({"content-type": "application/json"} if body is not None else {}), **extra}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: pytest output and benchmark stdout are for results."""
