"""The `keys` commands print only their answer on stdout, as the README uses them
(`KEY=$(whisperx-service keys create NAME)`, `keys create NAME --json | jq`); their audit lines go to
stderr. Checked on the real command in its own process (a fresh process has no logging set up, which
is where a log line could land on stdout), on the test Redis and a temporary storage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from whisperx_service.domain.keys import is_key_id

CLI = "from whisperx_service.cli import main; main()"
REPO = Path(__file__).resolve().parents[2]


def _keys(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_keys_commands_answer_alone_on_stdout(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "STORAGE_", "REDIS_"))},
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "REDIS_URL": redis_url,
        "STORAGE_ROOT": str(tmp_path / "storage"),
    }
    made = _keys(env, "create", "alice")
    assert made.stdout.count("\n") == 1
    key = made.stdout.strip()
    assert key.startswith("wxs_") and is_key_id(key.split("_")[1])
    audit = [json.loads(line) for line in made.stderr.splitlines() if line.startswith("{")]
    assert any(a["event"] == "key_created" and a["logger"] == "whisperx_service.audit" for a in audit), made.stderr

    ops = json.loads(_keys(env, "create", "ops", "--admin", "--json").stdout)
    assert ops["name"] == "ops" and ops["admin"] is True and ops["key"].startswith("wxs_")

    listed = json.loads(_keys(env, "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["alice", "ops"]
    revoked = _keys(env, "revoke", "alice")
    assert revoked.stdout.strip() == f"revoked {listed[0]['id']} (alice)"
