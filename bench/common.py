"""What the benchmarks share: a free port, a gateway process started and waited for, the sample
call (looped to any length), and an atomic JSON write."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def sample_wav() -> Path:
    """pyannote.audio's 30 s two-speaker sample call (`pyannote/audio/sample/sample.wav` in the installed
    package), found without importing pyannote.

    Raises:
        FileNotFoundError: pyannote.audio is not installed or ships no sample.
    """
    spec = importlib.util.find_spec("pyannote.audio")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pyannote.audio is not installed (the worker extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "sample" / "sample.wav"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    return path


def loop_audio(src: Path, minutes: float, out: Path, codec: list[str] | None = None) -> Path:
    """`src` repeated (ffmpeg `-stream_loop`) and cut to `minutes` minutes, written to `out` with `codec`
    args (none: by `out`'s extension, e.g. 16-bit PCM for .wav).

    Raises:
        subprocess.CalledProcessError: ffmpeg failed.
    """
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(src), "-t", f"{minutes * 60:.3f}",
         *(codec or []), str(out)],
        check=True,
    )  # fmt: skip
    return out


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON to `path`: temp file in the same folder, fsync, rename."""
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    with tmp.open("w") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
