"""What the benchmarks share: a free port, and a gateway process started and waited for."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(env: Mapping[str, str], port: int, *extra: str) -> subprocess.Popen[bytes]:
    """`uvicorn` on the gateway factory at 127.0.0.1:`port`, once /healthz answers (up to 20 s).

    Args:
        extra: more uvicorn arguments (e.g. `--no-access-log`).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "whisperx_service.api.app:app_factory", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra],
        env=dict(env), cwd=REPO,
    )  # fmt: skip
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc
