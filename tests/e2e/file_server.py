"""A file server on loopback for the URL-input tests: a real HTTP server in a thread.

Paths (under any prefix the test picks for the file's name):
    /plain/<name>      the file, with Content-Length
    /chunked/<name>    the file in chunked transfer encoding (no length announced)
    /slow/<name>       the file with Content-Length, in SLOW_PIECES pieces SLOW_GAP_S apart
    /r/<n>/<name>      a 302 to /r/<n-1>/<name>, ..., /r/0/<name> being /plain/<name>
    /to/<url>          a 302 to the absolute URL `http://<url>`
    /big/<n>           n bytes of zeros, chunked (no length announced)
    /announced/<n>     a Content-Length of n, and no body (the fetch must stop at the header)
    /text              a plain-text page (not media)
    /hang              200 with a Content-Length, 1 KiB of it, then nothing for HANG_S
    anything else      404
Every accepted TCP connection is counted before a byte is read, and every request's path is
logged in order (the access log), so a test can tell that nothing connected at all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.receivers import serve_counting

#: Seconds a /hang answer stalls after its first KiB.
HANG_S = 30.0
#: Pieces and the gap (s) between them of a /slow answer.
SLOW_PIECES = 20
SLOW_GAP_S = 0.25


@dataclass
class FileServer:
    """A running file server serving `data` under /plain, /chunked, /slow and /r."""

    server: ThreadingHTTPServer
    data: bytes
    paths: list[str] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """`http://host:port/path` (an IPv6 literal goes in brackets)."""
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_file_server(data: bytes, host: str = "127.0.0.1") -> FileServer:
    """Serve `data` (see the module docstring) on `host` (a loopback address), free port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _head(self, status: int, length: int | None, ctype: str = "application/octet-stream") -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            if length is None:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", str(length))
            self.send_header("connection", "close")
            self.end_headers()

        def _redirect(self, to: str) -> None:
            self.send_response(302)
            self.send_header("location", to)
            self.send_header("content-length", "0")
            self.send_header("connection", "close")
            self.end_headers()

        def _chunked(self, pieces: list[bytes]) -> None:
            for p in pieces:
                self.wfile.write(f"{len(p):x}\r\n".encode() + p + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            fs = self.server.owner  # type: ignore[attr-defined]
            with fs.lock:
                fs.paths.append(self.path)
            parts = self.path.split("/")  # ['', kind, ...]
            kind = parts[1] if len(parts) > 1 else ""
            data = fs.data
            try:
                if kind == "plain":
                    self._head(200, len(data), "audio/wav")
                    self.wfile.write(data)
                elif kind == "chunked":
                    self._head(200, None, "audio/wav")
                    self._chunked([data[i : i + 65536] for i in range(0, len(data), 65536)])
                elif kind == "slow":
                    self._head(200, len(data), "audio/wav")
                    step = -(-len(data) // SLOW_PIECES)
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i : i + step])
                        self.wfile.flush()
                        time.sleep(SLOW_GAP_S)
                elif kind == "r":
                    n, name = int(parts[2]), "/".join(parts[3:])
                    self._redirect(f"/r/{n - 1}/{name}" if n > 1 else f"/plain/{name}")
                elif kind == "to":
                    self._redirect("http://" + "/".join(parts[2:]))
                elif kind == "big":
                    n = int(parts[2])
                    self._head(200, None)
                    self._chunked([b"\0" * min(65536, n - i) for i in range(0, n, 65536)])
                elif kind == "announced":
                    self._head(200, int(parts[2]))
                elif kind == "text":
                    body = b"<html><body>" + b"not a recording " * 200 + b"</body></html>"
                    self._head(200, len(body), "text/html")
                    self.wfile.write(body)
                elif kind == "hang":
                    self._head(200, 1 << 20)
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()
                    time.sleep(HANG_S)
                else:
                    self._head(404, 0)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the fetcher gave up (a limit, a timeout): nothing more to send

        def log_message(self, *_: Any) -> None:
            pass

    return serve_counting(host, Handler, lambda server: FileServer(server, data))
