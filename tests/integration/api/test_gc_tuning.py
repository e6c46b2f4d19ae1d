"""The gateway process built by `app_factory` (as uvicorn builds it) has its collector tuned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from whisperx_service.api.gc_tuning import YOUNG_THRESHOLD

PROBE = """
import gc
from whisperx_service.api.app import app_factory
before = gc.get_threshold()[0]
app_factory()
print(before, gc.get_threshold()[0], gc.get_freeze_count())
"""


def test_app_factory_freezes_the_start_state_and_raises_the_young_threshold(tmp_path: Path) -> None:
    env = {**os.environ, "STORAGE_ROOT": str(tmp_path / "storage"), "AUTH_ENABLED": "false", "API_HOST": "127.0.0.1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, frozen = (int(x) for x in out.stdout.split())
    assert before != YOUNG_THRESHOLD, "CPython's default before the app is built"
    assert after == YOUNG_THRESHOLD
    assert frozen > 10_000, f"only {frozen} objects frozen: the app's modules were not loaded yet"
