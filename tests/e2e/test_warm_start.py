"""Warm start on real worker processes: models load at start, before the first job, and a worker
whose hub model cannot load stops at start and tells `/readyz` why.

The worker is the real `celery ... worker` process with the offline models on CPU; the failing
one is `whisperx-service worker` asking for a gated pyannote pipeline from the hub with
HF_HUB_OFFLINE=1, an empty Hugging Face cache and an empty HF_TOKEN.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.conftest import REPO
from tests.e2e.conftest import start_service, stop_service
from tests.speech import SAMPLE_WAV
from whisperx_service.broker.kombu_redis import BrokerKeys, unacked_job_ids, waiting_job_ids
from whisperx_service.config import RedisSettings, Settings, WorkerSettings

#: A gated pyannote pipeline on the Hugging Face hub.
HUB_PIPELINE = "pyannote/speaker-diarization-community-1"


def _readyz(url: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(f"{url}/readyz", timeout=5)
    return r.status_code, dict(r.json())


def test_a_loading_worker_is_not_ready_and_the_first_job_loads_no_model(
    tmp_path_factory: Any, redis_url: str, models_dir: Path
) -> None:
    svc = start_service(tmp_path_factory.mktemp("warm"), redis_url, models_dir, workers=0)
    try:
        # The gateway is up first, so /readyz sees the worker from its first heartbeat on.
        worker = svc.start_worker()
        seen: list[tuple[int, dict[str, Any]]] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and worker.poll() is None:
            code, body = _readyz(svc.url)
            seen.append((code, body))
            if code == 200:
                break
            time.sleep(0.05)
        code, ready = seen[-1]
        assert code == 200, f"not ready: {ready}; logs in {svc.logs}"

        loading = [(c, b) for c, b in seen if b["workers"] and not any(w["warm"] for w in b["workers"])]
        assert loading, "the worker was seen live while it loaded its models"
        for c, b in loading:
            assert c == 503 and b["status"] == "not_ready", "a worker that is loading counts as ready"
            assert b["reason"].startswith("no ready worker: 1 live worker(s) still loading"), b
            assert b["checks"]["workers"] == 1 and b["checks"]["warm_workers"] == 0
        states = {p["state"] for _, b in loading for w in b["workers"] for p in w["processes"]}
        assert states <= {"loading"}, states
        assert any(not m["warm"] for _, b in loading for w in b["workers"] for p in w["processes"] for m in p["models"])

        assert ready["checks"] == {"redis": True, "storage": True, "workers": 1, "warm_workers": 1}
        (listed,) = ready["workers"]
        assert listed["warm"] is True
        (process,) = listed["processes"]
        assert process["state"] == "warm"
        assert process["device"]["type"] == "cpu" and process["device"]["memory_total_bytes"] is None
        assert {m["stage"]: m["name"] for m in process["models"]} == {
            "asr": "tiny.en",
            "diarize": "offline-diarization",
        }
        assert all(m["warm"] for m in process["models"])
        assert process["load_s"] > 0 and process["warmup_s"] > 0, "loaded, then run once on the warm-up clip"
        assert str(REPO) not in json.dumps(ready) and str(models_dir) not in json.dumps(ready)

        job = svc.submit(SAMPLE_WAV, num_speakers=2)
        status = svc.wait(job["id"], 600)
        assert status["status"] == "succeeded", status
        result = svc.result(job["id"]).json()
        assert result["models_loaded"] == [], "the first job on a warm worker loads no model"
        assert result["segments"] and {s["speaker"] for s in result["segments"]} >= {"SPEAKER_00", "SPEAKER_01"}
        log = svc.worker_log(worker)
        assert log.count('"models_warm"') == 1
        assert log.index('"models_warm"') < log.index('"job_started"'), "the models load before the job"
    finally:
        stop_service(svc)


def test_a_hub_model_that_cannot_load_stops_the_worker_at_start(
    tmp_path_factory: Any, redis_url: str, models_dir: Path
) -> None:
    tmp = tmp_path_factory.mktemp("hubfail")
    cli = [str(Path(sys.executable).parent / "whisperx-service"), "worker"]  # as the worker image runs it
    svc = start_service(tmp, redis_url, models_dir, workers=0, worker_command=cli)
    try:
        # A job waiting before the worker starts: the worker may take its message, and must give it back.
        job = svc.submit(SAMPLE_WAV)
        empty_cache = tmp / "hf-home"
        empty_cache.mkdir()
        worker = svc.start_worker(
            DIARIZE_PIPELINE=HUB_PIPELINE, HF_HUB_OFFLINE="1", HF_HOME=str(empty_cache), HF_TOKEN=""
        )
        assert worker.wait(300) == 1, "the worker exits with a failure code"

        lines = [line for line in svc.worker_log(worker).splitlines() if "worker_start_failed" in line]
        assert len(lines) == 1, lines
        failed = json.loads(lines[0])
        assert failed["level"] == "error"
        assert failed["model"] == f"diarize:{HUB_PIPELINE}"
        assert "run `whisperx-service models download` with network access" in failed["reason"]
        assert f"https://hf.co/{HUB_PIPELINE}" in failed["reason"] and "HF_TOKEN" in failed["reason"]
        assert '"job_started"' not in svc.worker_log(worker), "no job ran on the worker without its models"

        code, body = _readyz(svc.url)
        assert code == 503 and body["status"] == "not_ready"
        assert body["checks"]["workers"] == 0 and body["workers"] == []
        assert body["reason"] == f"no ready worker: a worker failed to start: {failed['reason']}"
        assert body["failures"][0]["model"] == f"diarize:{HUB_PIPELINE}"
        text = json.dumps(body)
        assert str(tmp) not in text and str(REPO) not in text and str(models_dir) not in text

        with svc.client() as c:
            assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        settings = Settings(
            redis=RedisSettings(url=svc.env["REDIS_URL"], key_prefix=svc.env["REDIS_KEY_PREFIX"]),
            worker=WorkerSettings(queue=svc.env["WORKER_QUEUE"]),
        )
        r = redis.Redis.from_url(settings.redis.url)
        broker = BrokerKeys.of(settings)
        assert waiting_job_ids(r, broker, settings.worker.queue) == [job["id"]], "its message is back in the queue"
        assert unacked_job_ids(r, broker) == []
        r.close()
    finally:
        stop_service(svc)
