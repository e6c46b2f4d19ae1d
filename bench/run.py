"""Benchmarks (`make bench`): writes bench/results.json. Not a test: numbers to report and track.

upload: stream a large multipart body (default 2 GiB) through `POST /v1/jobs` of a real gateway
process; record the gateway's peak RSS growth (sampled from /proc every 20 ms) and its MB/s beside
`dd` writing the same number of bytes to the same disk (with fsync, as the gateway does).
Targets (issue 2): RSS growth <= 64 MiB; throughput >= 70 % of dd.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.json"
MiB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler(threading.Thread):
    """Samples a process's RSS (bytes) every `interval_s` until stopped; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, _rss_bytes(self.pid))
            time.sleep(self.interval_s)


def _dd(path: Path, size: int) -> float:
    """Seconds for dd to write `size` bytes of zeros to `path` with a final fsync."""
    t = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size // MiB}", "conv=fsync", "status=none"],
        check=True,
    )
    dt = time.perf_counter() - t
    path.unlink()
    return dt


def _multipart(size: int, boundary: str) -> tuple[Iterator[bytes], int]:
    """A multipart body whose `file` part is a WAV header + `size` bytes; (chunks, total length)."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    wav = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data"
    tail = f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="diarize"\r\n\r\nfalse\r\n--{boundary}--\r\n'
    block = bytes(range(256)) * (MiB // 256)

    def gen() -> Iterator[bytes]:
        yield head + wav
        left = size - len(wav)
        while left > 0:
            n = min(left, MiB)
            yield block[:n]
            left -= n
        yield tail.encode()

    return gen(), len(head) + size + len(tail)


def bench_upload(size: int, redis_url: str) -> dict[str, float | int | bool]:
    """Run the upload benchmark; returns its numbers."""
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # a database of its own (default 13)
    port = _free_port()
    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix="work-") as tmp:
        storage = Path(tmp) / "storage"
        env = {
            **os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": "bench", "WORKER_QUEUE": "bench",
            "STORAGE_ROOT": str(storage), "MAX_UPLOAD_BYTES": str(size + MiB), "LOG_JSON": "true",
        }  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "whisperx_service.api.app:app_factory", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env, cwd=REPO,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # Warm up the route (imports, first-request allocations) so the baseline is fair.
            httpx.post(f"{url}/v1/jobs", files={"file": ("w.wav", b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\0" * 4096)})
            time.sleep(0.5)
            base = _rss_bytes(proc.pid)
            sampler = RssSampler(proc.pid)
            sampler.start()
            boundary = "benchboundary7MA4YWxkTrZu0gW"
            body, length = _multipart(size, boundary)
            t = time.perf_counter()
            r = httpx.post(
                f"{url}/v1/jobs", content=body, timeout=None,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)},
            )  # fmt: skip
            dt = time.perf_counter() - t
            sampler.stop.set()
            sampler.join()
            assert r.status_code == 202, r.text
            stored = (storage / "jobs" / r.json()["id"] / "source").stat().st_size
            assert stored == size, (stored, size)
            dd_s = _dd(storage / "dd.bin", size)
        finally:
            proc.terminate()
            proc.wait(10)
            redis.Redis.from_url(redis_url).flushdb()
    mbps = size / MiB / dt
    dd_mbps = size / MiB / dd_s
    growth = (sampler.peak - base) / MiB
    return {
        "bytes": size,
        "seconds": round(dt, 2),
        "mib_per_s": round(mbps, 1),
        "dd_mib_per_s": round(dd_mbps, 1),
        "ratio_to_dd": round(mbps / dd_mbps, 3),
        "rss_base_mib": round(base / MiB, 1),
        "rss_peak_mib": round(sampler.peak / MiB, 1),
        "rss_growth_mib": round(growth, 1),
        "target_rss_growth_mib": 64,
        "target_ratio_to_dd": 0.7,
        "meets_targets": growth <= 64 and mbps / dd_mbps >= 0.7,
    }


def main() -> None:
    """Run the selected benchmarks and merge their numbers into bench/results.json."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["upload"], action="append")
    ap.add_argument("--upload-bytes", type=int, default=2 * 1024 * MiB)
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    if not args.only or "upload" in args.only:
        results["upload"] = bench_upload(args.upload_bytes, args.redis_url)
        print("upload:", json.dumps(results["upload"]))
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
