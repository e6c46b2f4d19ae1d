"""A real service for the benchmarks: a gateway and one Celery worker process, and one job's timings.

`BenchService.start` runs uvicorn on the gateway factory and `celery worker` on the service's worker
app (prefork, one process) with a key prefix and queue of their own, storage in a temp folder, auth
off on loopback, and waits until `/readyz` says the worker is alive. `run_job` submits a file and
reads its event stream to the terminal event: the client's view of the job (submit to terminal,
seconds), the gateway's record (queued and running seconds) and the result's stage timings.
Used by `bench/run.py` (`overhead`, `warm`) and `bench/gpu.py` (the service column).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from common import REPO, free_port

#: SSE event types that end a job's stream (domain/events.py).
TERMINAL_EVENTS = ("succeeded", "failed", "cancelled")


@dataclass
class JobRun:
    """One job through the service, as a client and the job record see it (seconds)."""

    job_id: str
    status: str
    #: POST /v1/jobs until its 202 (upload, probe, record).
    submit_s: float
    #: POST /v1/jobs sent until the terminal event arrived on the job's stream.
    wall_s: float
    #: Job record: created_at -> started_at (dispatch, broker, claim).
    queued_s: float
    #: Job record: started_at -> finished_at (the worker's whole task).
    running_s: float
    #: CPU seconds (user + system, all threads) the worker's pool process used from submit to terminal
    #: event (it moves with other load too: OpenMP threads spin while they wait).
    worker_cpu_s: float
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchService:
    """Handles to a running gateway + worker; stop with `stop()`."""

    url: str
    env: dict[str, str]
    work: Path
    redis_url: str
    prefix: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Seconds from starting the worker process until `/readyz` answered 200.
    worker_ready_s: float = 0.0

    @classmethod
    def start(
        cls, work: Path, redis_url: str, extra_env: Mapping[str, str], ready_timeout_s: float = 300.0
    ) -> BenchService:
        """Start gateway + worker; return once `/readyz` is 200.

        Args:
            work: a folder of this service's own (storage and logs go there).
            redis_url: the Redis to use (its database is shared: keys are under a fresh prefix).
            extra_env: settings for both processes (ASR_DEVICE, ASR_MODEL, ...).
            ready_timeout_s: how long to wait for readiness.

        Raises:
            RuntimeError: a process exited early or `/readyz` never answered 200; the logs are in `work/logs`.
        """
        tag = uuid.uuid4().hex[:8]
        port = free_port()
        env = {
            **os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": f"bench-{tag}", "WORKER_QUEUE": f"bench-{tag}",
            "STORAGE_ROOT": str(work / "storage"), "AUTH_ENABLED": "false", "API_HOST": "127.0.0.1",
            "API_PORT": str(port), "AUTH_ADDRESS_RATE_LIMIT": "1000000/minute", "LOG_JSON": "true",
            "LOG_LEVEL": "WARNING", "WORKER_HEARTBEAT_S": "1", "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
            "PYANNOTE_METRICS_ENABLED": "0", "REMAP_SIGTERM": "SIGQUIT", "PYTHONPATH": _pythonpath(),
            **extra_env,
        }  # fmt: skip
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        svc = cls(f"http://127.0.0.1:{port}", env, work, redis_url, f"bench-{tag}")
        py = sys.executable
        worker = [py, "-m", "celery", "-A", "whisperx_service.worker.main", "worker", "-P", "prefork", "-c", "1",
                  "-Q", env["WORKER_QUEUE"], "-n", f"bench-{tag}@%h", "--without-gossip", "--without-mingle",
                  "--loglevel", "WARNING"]  # fmt: skip
        api = [py, "-m", "uvicorn", "whisperx_service.api.app:app_factory", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
        t0 = time.perf_counter()
        for name, cmd in (("worker", worker), ("api", api)):
            out = (logs / f"{name}.log").open("wb")
            svc.procs.append(
                subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            )
            out.close()
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in svc.procs):
                svc.stop()
                raise RuntimeError(f"a service process exited early; logs in {logs}")
            try:
                if httpx.get(f"{svc.url}/readyz", timeout=2).status_code == 200:
                    svc.worker_ready_s = time.perf_counter() - t0
                    return svc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        svc.stop()
        raise RuntimeError(f"service not ready in {ready_timeout_s} s; logs in {logs}")

    def run_job(self, path: Path, timeout_s: float = 3600.0, **fields: Any) -> JobRun:
        """Submit `path` (form `fields` as job options), follow its event stream to the end.

        Raises:
            RuntimeError: the submission was refused or no terminal event came within `timeout_s`.
        """
        data = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
        timeout = httpx.Timeout(60.0, read=timeout_s)
        cpu0 = self.worker_cpu_s()
        with httpx.Client(base_url=self.url, timeout=timeout) as c:
            t0 = time.perf_counter()
            with path.open("rb") as f:
                r = c.post("/v1/jobs", files={"file": (path.name, f, "application/octet-stream")}, data=data)
            submit_s = time.perf_counter() - t0
            if r.status_code != 202:
                raise RuntimeError(f"submission answered {r.status_code}: {r.text[:500]}")
            job_id = r.json()["id"]
            ended = None
            with c.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}) as s:
                for line in s.iter_lines():
                    if line.startswith("event:") and line.split(":", 1)[1].strip() in TERMINAL_EVENTS:
                        ended = time.perf_counter()
                        break
            if ended is None:
                raise RuntimeError(f"job {job_id}: the event stream ended without a terminal event")
            wall_s = ended - t0
            cpu_s = self.worker_cpu_s() - cpu0
            record = c.get(f"/v1/jobs/{job_id}").json()
            result = c.get(f"/v1/jobs/{job_id}/result", params={"format": "json"})
        return JobRun(
            job_id=job_id,
            status=str(record["status"]),
            submit_s=submit_s,
            wall_s=wall_s,
            queued_s=_between(record.get("created_at"), record.get("started_at")),
            running_s=_between(record.get("started_at"), record.get("finished_at")),
            worker_cpu_s=cpu_s,
            result=result.json() if result.status_code == 200 else {"error": result.text[:500]},
        )

    def worker_cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the worker's pool processes (children of the worker)."""
        worker = self.procs[0].pid
        try:
            children = Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
        except OSError:
            return 0.0
        return sum(process_cpu_s(int(pid)) for pid in children)

    def stop(self) -> None:
        """SIGTERM both processes (their whole sessions), SIGKILL after 20 s; delete this service's keys."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        try:
            r = redis.Redis.from_url(self.redis_url)
            for key in r.scan_iter(match=f"{self.prefix}:*", count=1000):
                r.delete(key)
            r.close()
        except redis.RedisError:
            pass


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _between(a: str | None, b: str | None) -> float:
    """Seconds from ISO time `a` to ISO time `b`; 0 when either is missing."""
    if not a or not b:
        return 0.0
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _pythonpath() -> str:
    """This checkout's src first, so the processes run the code beside this script."""
    rest = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(REPO / "src"), *([rest] if rest else [])])


def redis_answers(url: str) -> bool:
    """Whether a Redis answers PING at `url` (1 s connect timeout)."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_private_redis(folder: Path) -> tuple[str, subprocess.Popen[bytes]] | None:
    """A redis-server of this run's own on a free loopback port (no persistence), or None if none is installed.

    Returns:
        (its URL on database 8, the process); stop the process when done.

    Raises:
        RuntimeError: it did not answer within 10 s.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/8"
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return url, proc
