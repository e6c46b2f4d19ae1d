"""`whisperx-service healthcheck` (the images' HEALTHCHECK) against a real HTTP server on loopback.

The server is the standard library's, in a thread: it stands for the gateway's `/healthz` only,
so the probe's address, Host header and exit status are checked without Redis.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from whisperx_service.cli import healthz_request, main
from whisperx_service.config import get_settings


class _Healthz(BaseHTTPRequestHandler):
    """Answers GET with the server's `status`; records each request's path and Host header."""

    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        server.seen.append((self.path, self.headers.get("Host", "")))
        self.send_response(server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Silent."""


class _Server(HTTPServer):
    status = 200
    seen: list[tuple[str, str]]


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Healthz)
    srv.seen = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("API_HOST", "API_PORT", "API_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _run(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = CliRunner().invoke(main, ["healthcheck", "--timeout", "2"])
    return result.exit_code, result.output


def test_wildcard_bind_is_probed_on_loopback_port_from_settings(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = _run(monkeypatch, API_HOST="0.0.0.0", API_PORT=str(server.server_port))
    assert code == 0, out
    assert server.seen == [("/healthz", f"127.0.0.1:{server.server_port}")]


def test_restricted_hosts_send_an_allowed_host_header(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = _run(
        monkeypatch, API_HOST="127.0.0.1", API_PORT=str(server.server_port), API_ALLOWED_HOSTS='["*.example.com"]'
    )
    assert code == 0, out
    assert server.seen == [("/healthz", "healthcheck.example.com")]


def test_an_unhealthy_answer_fails(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    server.status = 503
    code, out = _run(monkeypatch, API_HOST="127.0.0.1", API_PORT=str(server.server_port))
    assert code == 1
    assert "HTTP 503" in out


def test_no_listener_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        code, out = _run(monkeypatch, API_HOST="127.0.0.1", API_PORT=str(port))
    assert code == 1
    assert "no answer" in out


def test_ipv6_wildcard_and_named_host() -> None:
    assert healthz_request("::", 8000, ["*"]) == ("http://[::1]:8000/healthz", {})
    assert healthz_request("10.0.0.5", 9000, ["stt.example.com", "b"]) == (
        "http://10.0.0.5:9000/healthz",
        {"Host": "stt.example.com"},
    )
