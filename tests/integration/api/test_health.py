"""/healthz, /readyz (Redis, storage, a live worker with its models warm) and /metrics (shared
counters, queue depth and running jobs in Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from tests.integration.api.conftest import Gateway, wait_until
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.domain.workers import DeviceInfo, ModelStatus, ProcessState, WorkerFailure, WorkerProcess
from whisperx_service.store.jobs import JobStore, heartbeat
from whisperx_service.store.keys import Keys
from whisperx_service.store.workers import FAILURE_KEEP_S, record_failure, record_process, state_ttl_s


def _sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def test_healthz(gateway: Gateway) -> None:
    r = gateway.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def _process(name: str, state: ProcessState) -> WorkerProcess:
    warm = state is ProcessState.warm
    return WorkerProcess(
        name=name,
        state=state,
        device=DeviceInfo(type="cpu"),
        models=[ModelStatus(stage="asr", name="tiny.en", warm=warm), ModelStatus(stage="diarize", name="x", warm=warm)],
    )


def test_readyz_needs_a_worker_with_its_models_warm(gateway: Gateway, redis_client: redis.Redis) -> None:
    keys = Keys.of(gateway.settings)
    ttl = state_ttl_s(gateway.settings.worker.heartbeat_s)
    r = gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "not_ready",
        "checks": {"redis": True, "storage": True, "workers": 0, "warm_workers": 0},
        "workers": [],
        "failures": [],
        "reason": "no ready worker: no live worker",
    }

    heartbeat(redis_client, keys, "host:1", state_ttl_s=ttl)  # alive, its pool process not recorded yet
    r = gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["workers"] == [{"name": "host:1", "warm": False, "processes": []}]
    assert r.json()["reason"] == "no ready worker: 1 live worker(s) still loading their models"

    record_process(redis_client, keys, "host:1", _process("host:2", ProcessState.loading), ttl)
    r = gateway.client.get("/readyz")
    assert r.status_code == 503, "a worker that is loading its models is not ready"
    body = r.json()
    assert body["checks"] == {"redis": True, "storage": True, "workers": 1, "warm_workers": 0}
    (worker,) = body["workers"]
    assert worker["warm"] is False and worker["processes"][0]["state"] == "loading"
    assert [m["warm"] for m in worker["processes"][0]["models"]] == [False, False]

    record_process(redis_client, keys, "host:1", _process("host:2", ProcessState.warm), ttl)
    r = gateway.client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and "reason" not in body
    assert body["checks"] == {"redis": True, "storage": True, "workers": 1, "warm_workers": 1}
    assert body["workers"] == [
        {"name": "host:1", "warm": True, "processes": [_process("host:2", ProcessState.warm).model_dump(mode="json")]}
    ]


def test_readyz_counts_a_worker_with_one_warm_process_of_two(gateway: Gateway, redis_client: redis.Redis) -> None:
    keys = Keys.of(gateway.settings)
    ttl = state_ttl_s(gateway.settings.worker.heartbeat_s)
    heartbeat(redis_client, keys, "host:1", state_ttl_s=ttl)
    record_process(redis_client, keys, "host:1", _process("host:2", ProcessState.loading), ttl)
    record_process(redis_client, keys, "host:1", _process("host:3", ProcessState.warm), ttl)
    r = gateway.client.get("/readyz")
    assert r.status_code == 200
    assert [p["name"] for p in r.json()["workers"][0]["processes"]] == ["host:2", "host:3"]


def test_readyz_ignores_stale_heartbeats(gateway: Gateway, redis_client: redis.Redis) -> None:
    keys = Keys.of(gateway.settings)
    stale = 3 * gateway.settings.worker.heartbeat_s + 5
    redis_client.zadd(keys.workers(), {"old-worker": time.time() - stale})
    record_process(redis_client, keys, "old-worker", _process("old-worker-pool", ProcessState.warm), 60)
    r = gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["workers"] == 0 and r.json()["workers"] == []


def test_readyz_gives_the_reason_a_worker_failed_to_start(gateway: Gateway, redis_client: redis.Redis) -> None:
    keys = Keys.of(gateway.settings)
    reason = "cannot load the diarization model 'org/pipe' (DIARIZE_PIPELINE): set HF_TOKEN and accept ..."
    record_failure(
        redis_client, keys, WorkerFailure(worker="host:9", model="diarize:org/pipe", reason=reason, at=time.time())
    )
    old = WorkerFailure(worker="host:8", model="asr:x", reason="old", at=time.time() - FAILURE_KEEP_S - 1)
    record_failure(redis_client, keys, old)
    r = gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reason"] == f"no ready worker: a worker failed to start: {reason}"
    assert [f["model"] for f in r.json()["failures"]] == ["diarize:org/pipe"], (
        "failures older than an hour are left out"
    )
    assert redis_client.hkeys(keys.worker_failures()) == [b"host:9"], "and deleted"

    ttl = state_ttl_s(gateway.settings.worker.heartbeat_s)
    heartbeat(redis_client, keys, "host:10", state_ttl_s=ttl)
    record_process(redis_client, keys, "host:10", _process("host:11", ProcessState.loading), ttl)
    assert gateway.client.get("/readyz").json()["reason"] == (
        f"no ready worker: 1 live worker(s) still loading their models; a worker failed to start: {reason}"
    )
    record_process(redis_client, keys, "host:10", _process("host:11", ProcessState.warm), ttl)
    r = gateway.client.get("/readyz")
    assert r.status_code == 200 and r.json()["failures"][0]["worker"] == "host:9"


def test_metrics_expose_the_shared_counters(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    before = gateway.client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    for name in (
        "wxs_jobs_submitted_total",
        "wxs_jobs_finished_total",
        "wxs_job_duration_seconds_bucket",
        "wxs_job_duration_seconds_sum",
        "wxs_job_duration_seconds_count",
        "wxs_upload_bytes_total",
        "wxs_sse_clients",
    ):
        assert name in before.text
    assert _sample(before.text, "wxs_jobs_submitted_total") == 0

    assert _sample(before.text, 'wxs_queue_depth{where="held"}') == 0
    assert _sample(before.text, 'wxs_queue_depth{where="broker"}') == 0
    assert _sample(before.text, "wxs_jobs_running") == 0

    job_id = submit()

    # Held on its key's pending list, then sent to the broker by the dispatcher (no worker takes it).
    def sent() -> bool:
        text = gateway.client.get("/metrics").text
        return (
            _sample(text, 'wxs_queue_depth{where="held"}') == 0
            and _sample(text, 'wxs_queue_depth{where="broker"}') == 1
        )

    wait_until(sent, what="the job counted in the broker's queue")
    claim = worker_store.claim(job_id, "w", lease_s=60)
    assert _sample(gateway.client.get("/metrics").text, "wxs_jobs_running") == 1
    worker_store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)
    after = gateway.client.get("/metrics").text
    assert _sample(after, "wxs_jobs_running") == 0
    assert _sample(after, "wxs_jobs_submitted_total") == 1
    assert _sample(after, "wxs_upload_bytes_total") > 0
    assert _sample(after, 'wxs_jobs_finished_total{outcome="succeeded"}') == 1
    assert _sample(after, 'wxs_jobs_finished_total{outcome="failed"}') == 0
    assert _sample(after, 'wxs_job_duration_seconds_bucket{le="5"}') == 1
    assert _sample(after, 'wxs_job_duration_seconds_bucket{le="+Inf"}') == 1
    assert _sample(after, "wxs_job_duration_seconds_count") == 1
    assert _sample(after, "wxs_sse_clients") == 0


def test_gateway_never_imports_the_ml_stack() -> None:
    code = (
        "import sys\n"
        "from whisperx_service.api.app import create_app\n"
        "from whisperx_service.config import Settings\n"
        "from whisperx_service.broker.celery_app import make_celery\n"
        "import whisperx_service.transcripts.formats\n"
        "s = Settings()\n"
        "create_app(s, celery=make_celery(s))\n"
        "heavy = ('torch', 'whisperx', 'faster_whisper', 'pyannote', 'ctranslate2')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout
