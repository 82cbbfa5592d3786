"""A real HTTP server on 127.0.0.1 with faults injected per request, for download tests."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchpipe.contracts.benchmark import Source

PAYLOAD = os.urandom(8 * 1024 + 123)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
GROWTH = b" and a few more bytes"


@dataclass
class ServerState:
    """What the handler does for each request, and what it saw.

    ``actions[i]`` is the fault for request i (0-based); requests past the list get
    ``default``. Actions: "ok", "500", "503", "404", "416", "truncate", "stall", "grown" (the
    file has grown by GROWTH since the last request), "no-length" (no Content-Length:
    the body ends when the connection closes), "slow" (the body in ``slow_piece``-byte
    pieces, ``slow_delay`` seconds apart: steady, never stalled past a read timeout).
    """

    data: bytes = PAYLOAD
    actions: list[str] = field(default_factory=list)
    default: str = "ok"
    honor_range: bool = True
    slow_piece: int = 1024
    slow_delay: float = 0.005
    range_headers: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        return len(self.range_headers)

    def record(self, range_header: str | None) -> str:
        with self.lock:
            index = len(self.range_headers)
            self.range_headers.append(range_header)
        return self.actions[index] if index < len(self.actions) else self.default


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 5  # bounds every read on the server side

    def do_GET(self) -> None:
        state = self.server.state
        range_header = self.headers.get("Range")
        action = state.record(range_header)
        if action in ("500", "503", "404", "416"):
            self._send_status(int(action))
            return
        data = state.data + GROWTH if action == "grown" else state.data
        start = self._range_start(range_header) if state.honor_range else None
        body = data[start or 0 :]
        self.send_response(206 if start is not None else 200)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if action == "no-length":
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "truncate":
            # Full Content-Length announced, half sent, then the connection closes.
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        if action == "stall":
            self.wfile.write(body[:10])
            self.wfile.flush()
            time.sleep(0.5)  # longer than the client's timeout in the stall test
            return
        if action == "slow":
            for offset in range(0, len(body), state.slow_piece):
                self.wfile.write(body[offset : offset + state.slow_piece])
                self.wfile.flush()
                time.sleep(state.slow_delay)
            return
        self.wfile.write(body)

    def _send_status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    @staticmethod
    def _range_start(header: str | None) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        return int(match.group(1)) if match else None

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up is expected in the stall test


@dataclass
class Served:
    state: ServerState
    url: str

    def source(self, name: str = "data.bin", sha256: str = PAYLOAD_SHA) -> Source:
        return Source(name=name, url=self.url, sha256=sha256)


def serve() -> Iterator[Served]:
    state = ServerState()
    server = _Server(state)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Served(state, f"http://{host}:{port}/data.bin")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
