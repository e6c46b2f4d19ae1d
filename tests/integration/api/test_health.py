"""/healthz, /readyz (Redis, storage, worker heartbeat) and /metrics (shared counters, queue depth and
running jobs in Redis)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable

import redis

from tests.integration.api.conftest import Gateway, wait_until
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.store.jobs import JobStore, heartbeat
from whisperx_service.store.keys import Keys


def _sample(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def test_healthz(gateway: Gateway) -> None:
    r = gateway.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_needs_a_worker_heartbeat(gateway: Gateway, redis_client: redis.Redis) -> None:
    r = gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not_ready", "checks": {"redis": True, "storage": True, "workers": 0}}
    heartbeat(redis_client, Keys.of(gateway.settings), "worker-1@host")
    r = gateway.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"redis": True, "storage": True, "workers": 1}}


def test_readyz_ignores_stale_heartbeats(gateway: Gateway, redis_client: redis.Redis) -> None:
    keys = Keys.of(gateway.settings)
    stale = 3 * gateway.settings.worker.heartbeat_s + 5
    redis_client.zadd(keys.workers(), {"old-worker": time.time() - stale})
    assert gateway.client.get("/readyz").json()["checks"]["workers"] == 0


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
