"""ffprobe's wall-clock timeout and the resource limits its runs get, on real processes.

A FIFO with no writer stands in for an input that never lets ffprobe finish (a stalled network
share, a device): ffprobe blocks in open(2) and must be killed at the timeout. The CPU-time limit
is shown on a busy loop run under the same `rlimits` the probe and the decoder use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from whisperx_service import media


def _ffprobe_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "ffprobe"]


def test_probe_of_an_input_that_never_ends_is_killed_at_the_timeout(tmp_path: Path) -> None:
    fifo = tmp_path / "upload"
    os.mkfifo(fifo)
    with pytest.raises(media.ProbeFailed, match=r"ran longer than 1\.5 s"):
        media.probe(fifo, timeout_s=1.5)
    assert _ffprobe_children() == []  # killed and reaped, not left blocked on the FIFO


def test_cpu_limit_kills_a_busy_child() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=media.rlimits(1),
        timeout=60,
        check=False,
    )
    # RLIMIT_CPU: SIGXCPU at the soft limit (equal to the hard one, so SIGKILL follows if ignored).
    assert done.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def test_address_space_limit_refuses_a_large_allocation() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "bytearray(512 * 1024 * 1024)"],
        preexec_fn=media.rlimits(10, address_space_bytes=256 * 1024 * 1024),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert b"MemoryError" in done.stderr
