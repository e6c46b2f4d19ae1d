"""`make run` reads `.env` as the service does (scripts/env.sh `load_dotenv`), checked through real bash
and the real settings: JSON values survive, the environment wins over `.env`, and `.env` can turn
the hub on (`HF_HUB_OFFLINE=0`) for `models download` and the workers.

Each case runs bash on scripts/env.sh, then a Python process that builds `Settings()` from the
environment bash exported. The working directory holds no `.env`, so pydantic-settings sees only
what `load_dotenv` exported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV_SH = REPO / "scripts" / "env.sh"

#: Prints what the service would read from the environment bash hands it.
READ_SETTINGS = """
import json
from whisperx_service.config import Settings
from whisperx_service.pipeline.models.loaders import hub_offline
s = Settings()
print(json.dumps({
    "allowed_hosts": s.api.allowed_hosts,
    "cors_origins": s.api.cors_origins,
    "key_rate_limit": s.auth.key_rate_limit,
    "port": s.api.port,
    "diarize_pipeline": s.diarize.pipeline,
    "hf_token": s.diarize.hf_token.get_secret_value() if s.diarize.hf_token else None,
    "hub_offline": hub_offline(),
}))
"""


def _settings_after_load(tmp_path: Path, dotenv: str, env: dict[str, str]) -> dict[str, object]:
    """Write `dotenv` to a file, load it in bash with `env` set, and return what Settings read."""
    path = tmp_path / "run.env"
    path.write_text(dotenv, encoding="utf-8")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "AUTH_", "DIARIZE_", "HF_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), base.get("PYTHONPATH", "")])
    script = f'. "{ENV_SH}" && load_dotenv "$1" && exec "$2" -c "$3"'
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(path), sys.executable, READ_SETTINGS],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_dotenv_values_reach_the_settings_literally(tmp_path: Path) -> None:
    got = _settings_after_load(
        tmp_path,
        "# the README's reverse proxy settings\n"
        'API_ALLOWED_HOSTS=["stt.example.com","127.0.0.1"]\n'
        'export API_CORS_ORIGINS=["https://app.example.com"]\n'
        "AUTH_KEY_RATE_LIMIT=100/minute   # per key\n"
        "DIARIZE_PIPELINE='pyannote/speaker-diarization-community-1'\r\n"
        "HF_TOKEN=hf_abc\n"
        "not a setting line\n",
        {},
    )
    assert got["allowed_hosts"] == ["stt.example.com", "127.0.0.1"]
    assert got["cors_origins"] == ["https://app.example.com"]
    assert got["key_rate_limit"] == "100/minute"
    assert got["diarize_pipeline"] == "pyannote/speaker-diarization-community-1"
    assert got["hf_token"] == "hf_abc"


def test_the_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env = {"API_PORT": "9100", "HF_HUB_OFFLINE": "1"}
    got = _settings_after_load(tmp_path, "API_PORT=8000\nHF_HUB_OFFLINE=0\n", env)
    assert got["port"] == 9100
    assert got["hub_offline"] is True


def test_dotenv_can_turn_the_hub_on(tmp_path: Path) -> None:
    assert _settings_after_load(tmp_path, "HF_HUB_OFFLINE=0\n", {})["hub_offline"] is False
    assert _settings_after_load(tmp_path, "HF_HUB_OFFLINE=1\n", {})["hub_offline"] is True
