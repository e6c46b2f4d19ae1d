"""Benchmarks (`make bench`): writes bench/results.json. Not a test: numbers to report and track.

upload: stream a large multipart body (default 2 GiB) through `POST /v1/jobs` of a real gateway
process; record the gateway's peak RSS growth (sampled from /proc every 20 ms) and its MB/s beside
`dd` writing the same number of bytes to the same disk (with fsync, as the gateway does).
Targets (issue 2): RSS growth <= 64 MiB; throughput >= 70 % of dd.

decode: a 2-hour MP3 (pyannote's sample call looped) decoded by the worker's ffmpeg step to PCM on
disk and cut into a chunk plan (silence search included), then, with the ASR pipeline loaded, given
its ASR windows (the pipeline's VAD over the whole file in 5-minute blocks), in a fresh process:
peak RSS growth of each phase beyond its baseline (the second one's includes the loaded models),
ffmpeg's own peak RSS (measured before any model is loaded), and decode speed as x real time.
Targets (issue 3): RSS under 300 MB beyond the models; decode >= 100x real time.

rtf: the whole pipeline (offline CPU models: decode, transcribe, align, diarize, merge) on a
10-minute file (the sample call looped), in-process, models loaded before the clock starts: once
as one chunk (`rtf`) and once in 150 s chunks with 30 s overlap (`rtf_chunked`, 5 chunks).

tus: the same kind of file as a resumable upload (`/v1/uploads`, 64 MiB PATCHes) and a job made of
it by `upload_id` (bench/tus_bench.py): MB/s and peak RSS growth. Target (issue 13): <= 64 MiB.

sse: 1,000 event streams on one job of one gateway process, with side requests (bench/sse_bench.py).

overhead: the service's RTF beside WhisperX's own API and the service's pipeline, in-process, on the
same 2-minute file and models (bench/service_bench.py). Target: <= 3 % over WhisperX.

warm: first and second job on the same 30 s clip through a freshly started worker
(bench/service_bench.py). Target: first / second <= 1.2.

The GPU benchmark is bench/gpu.py (`make bench-gpu`, bench/results-gpu.json).

One benchmark alone: `python bench/run.py --only sse --redis-url redis://127.0.0.1:6379/10`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from common import free_port, sample_wav, start_gateway, write_json_atomic

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.json"
MiB = 1024 * 1024


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


SAMPLE = sample_wav()


def _looped(minutes: int, out: Path, codec: list[str]) -> Path:
    """pyannote's 30 s sample call looped to `minutes` minutes, encoded with `codec` args."""
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", str(minutes * 2 - 1), "-i", str(SAMPLE),
         *codec, str(out)],
        check=True,
    )  # fmt: skip
    return out


_DECODE_CHILD = """
import json, resource, sys, threading, time
from pathlib import Path
from whisperx_service.config import AsrSettings, Device, Settings
from whisperx_service.pipeline.audio.pcm import decode_to_pcm, open_pcm
from whisperx_service.pipeline.audio.chunks import plan_chunks, silence_finder
def rss_mib():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
peak = [rss_mib()]
def sample():  # ru_maxrss is not used: Linux carries it over from the parent through fork + exec
    while True:
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.01)
threading.Thread(target=sample, daemon=True).start()
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
# Phase 1, before the ML stack is imported (so ffmpeg's ru_maxrss is its own, not the parent's).
base0 = peak[0] = rss_mib()
t = time.perf_counter()
d = decode_to_pcm(src, dst, max_duration_s=4 * 3600)
decode_s = time.perf_counter() - t
ffmpeg_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
t = time.perf_counter()
pcm = open_pcm(d.path)
plan = plan_chunks(len(pcm), chunk_bytes=500_000_000, overlap_s=30.0, find_silence=silence_finder(pcm))
small = plan_chunks(len(pcm), chunk_bytes=60 * 32_000 * 10, overlap_s=30.0, find_silence=silence_finder(pcm))
plan_s = time.perf_counter() - t
time.sleep(0.05)
growth0 = peak[0] - base0
# Phase 2: the ASR pipeline loaded, then the VAD pass over the whole file (the ASR windows).
from whisperx_service.pipeline.plan import asr_windows_of  # the ML stack: only now
from whisperx_service.worker.models import ModelCache
settings = Settings(asr=AsrSettings(device=Device.cpu))
asr = ModelCache(settings).asr()
base1 = peak[0] = rss_mib()
t = time.perf_counter()
windows = asr_windows_of(pcm, asr, settings, lambda p: None)
windows_s = time.perf_counter() - t
time.sleep(0.05)
growth1 = peak[0] - base1
print(json.dumps({"audio_s": d.duration_s, "decode_s": decode_s, "plan_s": plan_s, "windows_s": windows_s,
                  "windows": len(windows), "base_mib": base1, "growth_decode_plan_mib": growth0,
                  "growth_windows_mib": growth1, "ffmpeg_peak_mib": ffmpeg_peak, "chunks_default": len(plan),
                  "chunks_10min": len(small)}))
"""


def bench_decode(hours: float = 2.0) -> dict[str, float | int | bool]:
    """Decode + chunk planning of a long MP3 in a fresh process; see the module docstring."""
    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix="work-") as tmp:
        src = _looped(int(hours * 60), Path(tmp) / "long.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"])
        out = subprocess.run(
            [sys.executable, "-c", _DECODE_CHILD, str(src), str(Path(tmp) / "audio.pcm")],
            check=True, capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
    growth = max(r["growth_decode_plan_mib"], r["growth_windows_mib"])
    speed = r["audio_s"] / r["decode_s"]
    return {
        "audio_s": round(r["audio_s"], 1),
        "decode_s": round(r["decode_s"], 2),
        "decode_x_realtime": round(speed, 1),
        "plan_s": round(r["plan_s"], 2),
        "asr_windows_s": round(r["windows_s"], 2),
        "asr_windows": r["windows"],
        "chunks_default_500MB": r["chunks_default"],
        "chunks_10min": r["chunks_10min"],
        "rss_with_models_mib": round(r["base_mib"], 1),
        "rss_growth_decode_plan_mib": round(r["growth_decode_plan_mib"], 1),
        "rss_growth_asr_windows_mib": round(r["growth_windows_mib"], 1),
        "rss_growth_mib": round(growth, 1),
        "ffmpeg_peak_rss_mib": round(r["ffmpeg_peak_mib"], 1),
        "target_rss_growth_mib": 300,
        "target_decode_x_realtime": 100,
        "meets_targets": growth < 300 and speed >= 100,
    }


def bench_rtf(minutes: int = 10, chunk_s: float | None = None) -> dict[str, float | int | str]:
    """Whole-pipeline real-time factor on CPU with the offline models (models loaded first).

    Args:
        chunk_s: chunk length (s) with 30 s overlap; None = the default (500 MB: one chunk here).
    """
    from whisperx_service.config import AsrSettings, ChunkSettings, Device, Settings
    from whisperx_service.domain.jobs import JobOptions
    from whisperx_service.pipeline.plan import JobPaths
    from whisperx_service.pipeline.runner import run_pipeline
    from whisperx_service.worker.models import ModelCache

    chunk = ChunkSettings() if chunk_s is None else ChunkSettings(bytes=int(chunk_s * 32_000), overlap_s=30.0)
    settings = Settings(asr=AsrSettings(device=Device.cpu), chunk=chunk)
    cache = ModelCache(settings)
    cache.asr(), cache.diarizer()
    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix="work-") as tmp:
        src = _looped(minutes, Path(tmp) / "audio.wav", [])
        paths = JobPaths(work=Path(tmp) / "work", chunks=Path(tmp) / "chunks")
        t = time.perf_counter()
        tr = run_pipeline(src, paths, JobOptions(num_speakers=2), cache, settings, lambda *a: None)
        wall = time.perf_counter() - t
    return {
        "audio_s": tr.duration,
        "wall_s": round(wall, 1),
        "rtf": round(wall / tr.duration, 3),
        "chunks": tr.chunks,
        "stage_s": tr.timings,
        "models": f"{tr.models.get('asr')} | {tr.models.get('align')} | {tr.models.get('diarize')}",
        "threads": os.cpu_count() or 0,
    }


def main() -> None:
    """Run the selected benchmarks and merge their numbers into bench/results.json."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--only", choices=["upload", "tus", "decode", "rtf", "rtf_chunked", "sse", "overhead", "warm"], action="append"
    )
    ap.add_argument("--overhead-minutes", type=float, default=2.0)
    ap.add_argument("--overhead-repeats", type=int, default=5)
    ap.add_argument("--sse-streams", type=int, default=1000)
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
    if not args.only or "tus" in args.only:
        from tus_bench import bench_tus

        results["tus"] = bench_tus(args.upload_bytes, args.redis_url)
        print("tus:", json.dumps(results["tus"]))
    if not args.only or "decode" in args.only:
        results["decode"] = bench_decode()
        print("decode:", json.dumps(results["decode"]))
    if not args.only or "rtf" in args.only:
        results["rtf"] = bench_rtf()
        print("rtf:", json.dumps(results["rtf"]))
    if not args.only or "rtf_chunked" in args.only:
        results["rtf_chunked"] = bench_rtf(chunk_s=150.0)
        print("rtf_chunked:", json.dumps(results["rtf_chunked"]))
    if not args.only or "sse" in args.only:
        from sse_bench import bench_sse  # bench/ is this script's folder, first on sys.path

        results["sse"] = bench_sse(args.redis_url, streams=args.sse_streams)
        print("sse:", json.dumps(results["sse"]))
    if not args.only or "overhead" in args.only:
        from service_bench import bench_overhead

        results["overhead"] = bench_overhead(
            args.redis_url, minutes=args.overhead_minutes, repeats=args.overhead_repeats
        )
        print("overhead:", json.dumps(results["overhead"]))
    if not args.only or "warm" in args.only:
        from service_bench import bench_warm

        results["warm"] = bench_warm(args.redis_url)
        print("warm:", json.dumps(results["warm"]))
    write_json_atomic(RESULTS, results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
