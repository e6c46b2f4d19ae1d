"""A webhook receiver on loopback for the tests: a real HTTP server in a thread, answering from a script.

Every accepted TCP connection is counted (`connections`) before any byte is read, and every
request is logged with its arrival time (monotonic s), headers and body, so a test can tell both
what was delivered and that nothing connected at all.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

#: A scripted answer that never comes: the handler sleeps this long without answering.
HANG = -1
HANG_S = 30.0


@dataclass
class Received:
    """One request the receiver got."""

    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A running receiver. `script`: the status of each request in turn (HANG: no answer); after the
    script, `default`."""

    server: ThreadingHTTPServer
    script: list[int] = field(default_factory=list)
    default: int = 200
    redirect: str | None = None  # when set, every answer is a 302 to this URL
    requests: list[Received] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        """The URL of this receiver under `host` (an IPv6 literal goes in brackets)."""
        return f"http://{host}:{self.port}{path}"

    def wait_for(self, n: int, timeout_s: float) -> list[Received]:
        """Wait until at least `n` requests arrived; returns them (AssertionError after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.requests)} requests after {timeout_s} s, expected {n}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


T = TypeVar("T")


def serve_counting(host: str, handler: type[BaseHTTPRequestHandler], make: Callable[[ThreadingHTTPServer], T]) -> T:
    """Serve `handler` on `host` (a loopback address), free port, in a daemon thread; returns
    `make(server)`, which the handlers reach as `self.server.owner` and whose `connections` (under
    its `lock`) counts every TCP connection accepted (a refused request must leave it at 0)."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        owner: Any = None

        def verify_request(self, request: Any, client_address: Any) -> bool:
            with self.owner.lock:
                self.owner.connections += 1
            return True

    server = Server((host, 0), handler)
    owner = make(server)
    server.owner = owner
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return owner


def start_receiver(host: str = "127.0.0.1", script: list[int] | None = None, default: int = 200) -> Receiver:
    """Start a receiver on `host` (a loopback address), free port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            rec = self.server.owner  # type: ignore[attr-defined]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with rec.lock:
                rec.requests.append(Received(time.monotonic(), self.path, dict(self.headers.items()), body))
                n = len(rec.requests)
            status = rec.script[n - 1] if n <= len(rec.script) else rec.default
            if status == HANG:
                time.sleep(HANG_S)
                return
            if rec.redirect is not None:
                self.send_response(302)
                self.send_header("location", rec.redirect)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    rec = serve_counting(host, Handler, lambda server: Receiver(server, list(script or []), default))
    return rec


def write_tone(path: Path) -> Path:
    """One second of a 440 Hz tone, 16 kHz mono 16-bit WAV, at `path` (audio for jobs that never run)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        tone = (int(8000 * math.sin(i * 440 * 2 * math.pi / 16000)) for i in range(16000))
        w.writeframes(b"".join(struct.pack("<h", v) for v in tone))
    return path
