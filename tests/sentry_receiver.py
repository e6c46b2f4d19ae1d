"""A local stand-in for a Sentry server: records the envelopes the real sentry-sdk sends to it.

`SentryReceiver` is an HTTP server on 127.0.0.1 (a free port) that accepts what sentry-sdk's
transport POSTs to `/api/<project>/envelope/` (gzip or plain; brotli when the `brotli` module is
installed), answers 200, and parses each envelope (newline-separated JSON: the envelope header,
then per item a header and a payload of `length` bytes or up to the next newline; the format of
https://develop.sentry.dev/sdk/data-model/envelopes/). DSN: `receiver.dsn`.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """(envelope header, [(item header, payload bytes)]) of one envelope.

    Raises:
        ValueError: not an envelope (malformed JSON header, a payload shorter than its length).
    """
    header_line, _, rest = body.partition(b"\n")
    header = json.loads(header_line)
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        if "length" in item:
            n = int(item["length"])
            if len(rest) < n:
                raise ValueError("payload shorter than its length")
            payload, rest = rest[:n], rest[n:]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item, payload))
    return header, items


class SentryReceiver:
    """Records sentry-sdk envelopes; `events()` are the `event` items' payloads (parsed JSON)."""

    def __init__(self) -> None:
        self.envelopes: list[tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli  # only when the sender had it

                    body = brotli.decompress(body)
                if self.path.rstrip("/").endswith("/envelope"):
                    with receiver.lock:
                        receiver.envelopes.append(parse_envelope(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="sentry-receiver")

    @property
    def dsn(self) -> str:
        """The DSN that sends here (project 1)."""
        return f"http://public@127.0.0.1:{self.port}/1"

    def start(self) -> SentryReceiver:
        """Serve on a thread; returns self."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        """Every error event received so far."""
        with self.lock:
            return [json.loads(p) for _, items in self.envelopes for h, p in items if h.get("type") == "event"]

    def wait_event(self, match: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        """The first event for which `match(event)` is true, waiting up to `timeout_s` seconds.

        Raises:
            AssertionError: none arrived in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events():
                if match(event):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no matching Sentry event in {timeout_s} s; got {len(self.events())} events")
