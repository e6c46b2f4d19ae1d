"""A real service for end-to-end tests: a uvicorn gateway and a Celery worker as processes.

They share a Redis database (14, not the integration tests' flushed one), a key prefix and a queue that
are unique to the fixture, and a temp storage root. The worker runs the offline models on CPU.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.private_redis import PrivateRedis
from tests.sse import SseEvent, iter_sse


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """Handles to a running gateway + worker."""

    url: str
    storage: Path
    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_cmd: list[str] = field(default_factory=list)
    outbound_cmd: list[str] = field(default_factory=list)

    def _spawn(self, cmd: list[str], name: str, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start `cmd` in its own session (killable as a group), logging to `logs/<name><n>.log`,
        n = its index in `procs`; `extra_env` overrides the service's environment for it only."""
        out = (self.logs / f"{name}{len(self.procs)}.log").open("wb")
        p = subprocess.Popen(
            cmd,
            cwd=REPO,
            env={**self.env, **extra_env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def start_outbound(self, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start one outbound worker (webhook deliveries, fetches); its log is `logs/outbound<n>.log`."""
        return self._spawn(self.outbound_cmd, "outbound", extra_env)

    def start_worker(self, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start one more worker process (its own session, so it can be killed as a group).

        `extra_env` overrides the service's environment for this worker only. Its log is
        `logs/worker<n>.log`, n = its index in `procs`.
        """
        return self._spawn(self.worker_cmd, "worker", extra_env)

    def worker_log(self, proc: subprocess.Popen[bytes]) -> str:
        """The output so far of a worker started by `start_worker`."""
        return (self.logs / f"worker{self.procs.index(proc)}.log").read_text(errors="replace")

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children at once (no shutdown of any kind)."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client on the gateway."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def submit(self, path: Path, **fields: Any) -> dict[str, Any]:
        """POST a file as a job; returns the 202 body."""
        data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
        with self.client() as c, path.open("rb") as f:
            r = c.post("/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data=data)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def events(self, job_id: str, last_event_id: str | None = None) -> list[SseEvent]:
        """Read the job's SSE stream to its end."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, read=600.0)) as c:
            return list(iter_sse(c, f"/v1/jobs/{job_id}/events", headers))

    def wait(self, job_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Poll the status until terminal; returns the last status body."""
        deadline = time.monotonic() + timeout_s
        with self.client() as c:
            while time.monotonic() < deadline:
                body = c.get(f"/v1/jobs/{job_id}").json()
                if body["status"] in ("succeeded", "failed", "cancelled"):
                    return dict(body)
                time.sleep(0.5)
        raise AssertionError(f"job {job_id} not finished after {timeout_s} s; logs in {self.logs}")

    def result(self, job_id: str, fmt: str = "json") -> httpx.Response:
        """GET the result in a format."""
        with self.client() as c:
            return c.get(f"/v1/jobs/{job_id}/result", params={"format": fmt})


def start_service(
    tmp: Path,
    redis_url: str,
    models: Path,
    *,
    worker_app: str = "whisperx_service.worker.main",
    worker_args: tuple[str, ...] = (),
    worker_command: list[str] | None = None,
    workers: int = 1,
    outbound: bool = False,
    **extra_env: str,
) -> Service:
    """Start gateway + worker processes and wait until /readyz says a worker has its models loaded.

    `worker_app` is the Celery app module of the workers (`-A`), `worker_args` more arguments of
    their command line (e.g. `--include`, a test module to load in them); `worker_command` replaces
    the whole command (e.g. the `whisperx-service worker` entry point). They hold for every worker
    this service starts. Workers run like `whisperx-service worker`: SIGTERM is a graceful
    shutdown (REMAP_SIGTERM=SIGQUIT), here with a 5 s soft window unless `extra_env` says otherwise.
    With `workers=0` no worker starts (the test starts its own with `Service.start_worker`) and it
    returns once the gateway answers `/healthz`. With `outbound`, one outbound worker (webhook
    deliveries, its own queue) starts too (`Service.start_outbound` starts more).
    """
    tag = uuid.uuid4().hex[:8]
    port = _free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/14",
        "REDIS_KEY_PREFIX": f"e2e-{tag}",
        "WORKER_QUEUE": f"e2e-{tag}",
        "OUTBOUND_QUEUE": f"e2e-out-{tag}",
        "STORAGE_ROOT": str(tmp / "storage"),
        "MODELS_DIR": str(models),
        "ASR_DEVICE": "cpu",
        "ASR_THREADS": "2",
        "WORKER_HEARTBEAT_S": "1",
        "LOG_JSON": "true",
        "HF_HUB_OFFLINE": "1",
        "PYANNOTE_METRICS_ENABLED": "0",
        "API_PORT": str(port),
        "REMAP_SIGTERM": "SIGQUIT",
        "AUTH_ENABLED": "false",  # the access-control tests run their own gateway with keys
        "AUTH_ADDRESS_RATE_LIMIT": "1000000/minute",  # the tests poll fast from one address
        "WORKER_SOFT_SHUTDOWN_S": "5",
        **extra_env,
    }
    logs = tmp / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    svc = Service(f"http://127.0.0.1:{port}", tmp / "storage", env, logs)
    py = sys.executable
    cmds = {
        "worker": [py, "-m", "celery", "-A", worker_app, "worker", "-P", "prefork", "-c", "1",
                   "-Q", env["WORKER_QUEUE"], "-n", f"e2e-{tag}@%h", "--without-gossip", "--without-mingle",
                   "--loglevel", "INFO", *worker_args],
        "api": [py, "-m", "uvicorn", "whisperx_service.api.app:app_factory", "--factory", "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning"],
    }  # fmt: skip
    svc.worker_cmd = worker_command or cmds["worker"]
    svc.outbound_cmd = [py, "-m", "celery", "-A", "whisperx_service.outbound.main", "worker", "-P", "threads",
                        "-c", "4", "-Q", env["OUTBOUND_QUEUE"], "-n", f"e2e-out-{tag}@%h", "--without-gossip",
                        "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
    if outbound:
        svc.start_outbound()
    for _ in range(workers):
        svc.start_worker()
    out = (logs / "api.log").open("wb")
    svc.procs.append(subprocess.Popen(cmds["api"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
    # Workers load their models before they count as ready: minutes on 2 busy CPU cores.
    wait_s = 300
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for p in svc.procs:
            if p.poll() is not None:
                stop_service(svc)
                raise AssertionError(f"a service process exited early; logs in {logs}")
        try:
            if httpx.get(f"{svc.url}/readyz" if workers else f"{svc.url}/healthz", timeout=2).status_code == 200:
                return svc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_service(svc)
    raise AssertionError(f"service not ready in {wait_s} s; logs in {logs}")


def stop_service(svc: Service) -> None:
    """Terminate the processes (SIGTERM, then SIGKILL after 20 s)."""
    for p in svc.procs:
        if p.poll() is None:
            p.terminate()
    for p in svc.procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


#: The signing secret of webhooks of the `service` fixture's jobs (auth is off there).
E2E_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"e2e webhook signing secret 32 b.").decode()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """A running gateway + CPU worker with the default (whisper) alignment backend."""
    svc = start_service(tmp_path_factory.mktemp("svc"), redis_url, models_dir, WEBHOOK_SECRET=E2E_WEBHOOK_SECRET)
    yield svc
    stop_service(svc)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started `PrivateRedis` for one test (free port, data in `tmp_path/redis`), stopped afterwards."""
    server = PrivateRedis(_free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.stop()
