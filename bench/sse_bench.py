"""The `sse` benchmark (see bench/run.py): many event streams on one job of one gateway process.

A real gateway process (uvicorn, auth off on loopback) and `streams` clients on one job's events,
spread over `client_procs` processes (bare asyncio protocols on uvloop, so the clients take little of
the CPU the gateway needs). Once every stream has its snapshot and `queued` event, a writer adds
`events` progress events (one per `interval_s`, through the worker's own store) and then the
terminal event, while a side thread sends `/healthz`, status reads and new submissions.
Recorded: whether every stream got every event in order; the delay from each event's stream time
(its id's ms part, Redis's clock, the same host) to its arrival at the client (p50, p95, max);
side-request latencies (p50, p95, max); the gateway's RSS before and with the streams open and its
CPU use while the events flowed.
Targets (issue "Safe to put on a network"): 1,000 streams, all events on every stream, p95 delay
<= 100 ms, every side request answered normally (200 / 202).
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing as mp
import os
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

import httpx
from common import free_port, start_gateway

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
TARGET_P95_MS = 100.0


def _pct(values: list[float], q: float) -> float:
    """The `q` quantile (0-1) of `values`, nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class _StreamClient(asyncio.Protocol):
    """One event stream read with a bare protocol: every `id:` line's id and its arrival time (ms).

    A protocol callback per TCP read, not a coroutine step per line, so 1,000 streams cost the
    client processes little of the machine's CPU (they share it with the gateway being measured).
    """

    def __init__(self, request: bytes, opened: asyncio.Event, done: asyncio.Future[None]) -> None:
        self.request, self.opened, self.done = request, opened, done
        self.events: list[tuple[str, float]] = []
        self.head = True  # still in the response headers
        self.tail = b""  # an unfinished line from the last read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]  # a stream transport (uvloop's is no asyncio.Transport subclass)

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        lines = (self.tail + data).split(b"\n")
        self.tail = lines.pop()
        for line in lines:
            if self.head:
                if line.startswith(b"HTTP/1.1 ") and b" 200 " not in line:
                    self._end(RuntimeError(line.decode(errors="replace").strip()))
                    return
                self.head = line != b"\r"
            elif line.startswith(b"id: "):
                self.events.append((line[4:].strip().decode(), now))
                if len(self.events) == 2:
                    self.opened.set()
            elif line == b"0\r" and self.events:
                self._end(None)  # the last chunk: the server ended the stream

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)


async def _one_stream(port: int, job_id: str, out: list[tuple[str, float]], opened: asyncio.Event) -> None:
    """Read one stream to its end; append (id, arrival ms) per event; set `opened` after `queued`."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    request = f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    transport, client = await loop.create_connection(
        lambda: _StreamClient(request.encode(), opened, done), "127.0.0.1", port
    )
    try:
        await done
    finally:
        transport.close()
        out.extend(client.events)


def _client_proc(port: int, job_id: str, n: int, ready: Any, results: Any) -> None:
    """One client process (on uvloop): `n` streams; says when all are open; sends back every stream's events."""
    import uvloop

    async def main() -> list[list[tuple[str, float]]]:
        outs: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        opened = [asyncio.Event() for _ in range(n)]
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(_one_stream(port, job_id, outs[i], opened[i])))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # a ramp, not one SYN flood
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 300)
        ready.put(n)
        await asyncio.gather(*tasks)
        return outs

    results.put(uvloop.run(main()))


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    """A small 16-bit mono WAV of silence."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _SideRequests(threading.Thread):
    """`/healthz`, a status read and a small submission in turn until stopped; their latencies (ms)."""

    def __init__(self, url: str, job_id: str, wav: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.wav = url, job_id, wav
        self.stop = threading.Event()
        self.ms: dict[str, list[float]] = {"healthz": [], "status": [], "submit": []}
        self.bad: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.is_set():
                for name, call, ok in (
                    ("healthz", lambda: c.get("/healthz"), 200),
                    ("status", lambda: c.get(f"/v1/jobs/{self.job_id}"), 200),
                    ("submit", lambda: c.post("/v1/jobs", files={"file": ("s.wav", self.wav, "audio/wav")}), 202),
                ):
                    t = time.perf_counter()
                    r = call()
                    self.ms[name].append((time.perf_counter() - t) * 1000)
                    if r.status_code != ok:
                        self.bad.append(f"{name}: {r.status_code}")
                time.sleep(0.05)


def bench_sse(redis_url: str, streams: int = 1000, events: int = 50, interval_s: float = 0.1) -> dict[str, Any]:
    """Run the event-stream benchmark; returns its numbers (see the module docstring)."""
    import redis

    from whisperx_service.config import RedisSettings, Settings
    from whisperx_service.domain.jobs import JobStatus, Stage
    from whisperx_service.store.jobs import JobStore
    from whisperx_service.store.keys import Keys

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    port, procs = free_port(), max(1, min(2, streams // 250))
    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix="work-") as tmp:
        env = {
            **os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": "bench", "WORKER_QUEUE": "bench",
            "STORAGE_ROOT": str(Path(tmp) / "storage"), "AUTH_ENABLED": "false", "API_RECONCILE_INTERVAL_S": "0",
            "AUTH_ADDRESS_RATE_LIMIT": "1000000/minute", "LOG_JSON": "true", "LOG_LEVEL": "WARNING",
        }  # fmt: skip
        gateway = start_gateway(env, port, "--no-access-log")
        url = f"http://127.0.0.1:{port}"
        try:
            wav = _wav(0.2)
            job_id = httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", wav, "audio/wav")}).json()["id"]
            time.sleep(0.5)
            rss_base = _rss_mib(gateway.pid)
            ctx = mp.get_context("fork")
            ready, results = ctx.Queue(), ctx.Queue()
            sizes = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
            clients = [ctx.Process(target=_client_proc, args=(port, job_id, n, ready, results)) for n in sizes]
            for p in clients:
                p.start()
            for _ in clients:
                ready.get(timeout=300)
            rss_open = _rss_mib(gateway.pid)
            side = _SideRequests(url, job_id, wav)
            side.start()
            store = JobStore(r, Keys.of(Settings(redis=RedisSettings(url=redis_url, key_prefix="bench"))))
            cpu0, t0 = _cpu_s(gateway.pid), time.perf_counter()
            claim = store.claim(job_id, "bench-worker", lease_s=600)
            for i in range(1, events + 1):
                store.progress(job_id, claim.attempt, Stage.transcribe, 100.0 * i / events, chunk=i, chunks=events)
                time.sleep(interval_s)
            store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)
            outs = [s for _ in clients for s in results.get(timeout=300)]
            stored = ["0-0", *(i.decode() for i, _ in r.xrange(f"bench:job:{job_id}:events"))]
            cpu_s, wall_s = _cpu_s(gateway.pid) - cpu0, time.perf_counter() - t0
            rss_peak = max(rss_open, _rss_mib(gateway.pid))
            side.stop.set()
            side.join()
            for p in clients:
                p.join(10)
        finally:
            gateway.terminate()
            gateway.wait(10)
            r.flushdb()
    expected = 1 + 2 + events + 1  # snapshot, queued, started, progress..., succeeded
    complete = sum(1 for s in outs if [i for i, _ in s] == stored)
    delays = [arrival - int(i.split("-")[0]) for s in outs for i, arrival in s[3:]]  # live events only
    side_ms = side.ms
    p95 = _pct(delays, 0.95)
    return {
        "streams": streams,
        "client_procs": procs,
        "events_per_stream": expected,
        "streams_complete": complete,
        "delay_ms_p50": round(_pct(delays, 0.5), 1),
        "delay_ms_p95": round(p95, 1),
        "delay_ms_max": round(max(delays, default=0.0), 1),
        **{f"{k}_ms_p50": round(_pct(v, 0.5), 1) for k, v in side_ms.items()},
        **{f"{k}_ms_p95": round(_pct(v, 0.95), 1) for k, v in side_ms.items()},
        **{f"{k}_ms_max": round(max(v, default=0.0), 1) for k, v in side_ms.items()},
        "side_requests": sum(len(v) for v in side_ms.values()),
        "side_requests_failed": len(side.bad),
        "gateway_rss_base_mib": round(rss_base, 1),
        "gateway_rss_streams_open_mib": round(rss_peak, 1),
        "gateway_cpu_s": round(cpu_s, 2),
        "gateway_cpu_pct_of_one_core": round(100 * cpu_s / wall_s, 1),
        "event_phase_s": round(wall_s, 2),
        "target_delay_ms_p95": TARGET_P95_MS,
        "meets_targets": complete == streams and p95 <= TARGET_P95_MS and not side.bad,
    }
