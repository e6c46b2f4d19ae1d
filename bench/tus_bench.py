"""tus benchmark (`python bench/run.py --only tus`): a large resumable upload through a real gateway.

The file (a WAV header + `size` bytes) goes to `/v1/uploads` the way `whisperx-client` sends it:
created, then PATCHed in parts of 64 MiB (`whisperx_client.tus.PART_BYTES`), each part streamed in
1 MiB blocks. Recorded: MB/s of the upload, the gateway's peak RSS growth (sampled from /proc every
20 ms), and the seconds `POST /v1/jobs` with `upload_id` takes to make a job of it (ffprobe and a
rename: no copy, so it does not grow with the size). Target (issue 13): RSS growth <= 64 MiB.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from common import free_port, start_gateway

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
#: Bytes per PATCH, as the Python client sends them (clients/python/src/whisperx_client/tus.py).
PART_BYTES = 64 * MiB
#: A WAV header whose sizes say "to the end of the file" (0xFFFFFFFF), as the upload benchmark's.
WAV_HEAD = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data"
TUS = {"Tus-Resumable": "1.0.0"}


def _part(start: int, end: int) -> Iterator[bytes]:
    """Bytes `start` to `end` of the benchmark file (the WAV header, then a repeating pattern)."""
    block = bytes(range(256)) * (MiB // 256)
    pos = start
    while pos < end:
        chunk = (WAV_HEAD[pos:] if pos < len(WAV_HEAD) else block[: min(MiB, end - pos)])[: end - pos]
        pos += len(chunk)
        yield chunk


def bench_tus(size: int, redis_url: str) -> dict[str, float | int | bool]:
    """Run the tus benchmark; returns its numbers."""
    import redis
    from run import RssSampler, _rss_bytes

    redis.Redis.from_url(redis_url).flushdb()  # a database of its own (default 13)
    port = free_port()
    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix="work-") as tmp:
        storage = Path(tmp) / "storage"
        env = {
            **os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": "bench", "WORKER_QUEUE": "bench",
            "STORAGE_ROOT": str(storage), "MAX_UPLOAD_BYTES": str(size + MiB), "LOG_JSON": "true",
            "AUTH_ENABLED": "false", "API_HOST": "127.0.0.1",
        }  # fmt: skip
        proc = start_gateway(env, port)
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=None) as c:
                # Warm up the routes (imports, first-request allocations) so the baseline is fair.
                warm = c.post("/v1/uploads", headers={**TUS, "Upload-Length": "1"}).headers["Location"]
                c.patch(warm, content=b"x", headers={**TUS, "Upload-Offset": "0",
                                                     "Content-Type": "application/offset+octet-stream"})  # fmt: skip
                time.sleep(0.5)
                base = _rss_bytes(proc.pid)
                sampler = RssSampler(proc.pid)
                sampler.start()
                t = time.perf_counter()
                r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": str(size)})
                assert r.status_code == 201, r.text
                location, offset = r.headers["Location"], 0
                while offset < size:
                    end = min(size, offset + PART_BYTES)
                    headers = {**TUS, "Upload-Offset": str(offset), "Content-Length": str(end - offset),
                               "Content-Type": "application/offset+octet-stream"}  # fmt: skip
                    r = c.patch(location, content=_part(offset, end), headers=headers)
                    assert r.status_code == 204, r.text
                    offset = int(r.headers["Upload-Offset"])
                dt = time.perf_counter() - t
                sampler.stop.set()
                sampler.join()
                t = time.perf_counter()
                r = c.post("/v1/jobs", json={"upload_id": location.rsplit("/", 1)[1], "diarize": False})
                job_s = time.perf_counter() - t
                assert r.status_code == 202, r.text
                stored = (storage / "jobs" / r.json()["id"] / "source").stat().st_size
                assert stored == size, (stored, size)
        finally:
            proc.terminate()
            proc.wait(10)
            redis.Redis.from_url(redis_url).flushdb()
    growth = (sampler.peak - base) / MiB
    return {
        "bytes": size,
        "part_bytes": PART_BYTES,
        "seconds": round(dt, 2),
        "mib_per_s": round(size / MiB / dt, 1),
        "job_from_upload_s": round(job_s, 3),
        "rss_base_mib": round(base / MiB, 1),
        "rss_peak_mib": round(sampler.peak / MiB, 1),
        "rss_growth_mib": round(growth, 1),
        "target_rss_growth_mib": 64,
        "meets_targets": growth <= 64,
    }
