"""GPU benchmark (`make bench-gpu`): 1 h of real speech through every stage, in-process and through the service.

On the GPU machine, from the repository root, with the venv (`.venv`, CUDA torch) and ./models:

    .venv/bin/python bench/gpu.py --out bench/results-gpu.json

(ffmpeg must be on PATH; redis-server too for the service column, else it is skipped with a note.)
On CPU, the proof that the script runs end to end (committed as bench/results-gpu-cpu-check.json):

    .venv/bin/python bench/gpu.py --minutes 1 --batch-sizes 8 --compute-types int8 \
        --out bench/results-gpu-cpu-check.json

What it does:

- Audio: pyannote.audio's 30 s two-speaker sample call (shipped in the package) looped to `--minutes`
  (default 60) as 16 kHz WAV, or the file given with `--audio`.
- Models: the hub set (ASR `large-v3-turbo`, wav2vec2 `WAV2VEC2_ASR_BASE_960H` aligner,
  `pyannote/speaker-diarization-community-1`) for each part found in the local caches
  (`whisperx-service models download`), else the offline set in ./models (docs/MODELS.md: tiny.en,
  Whisper cross-attention alignment, the offline pyannote pipeline). The hub is never contacted
  (HF_HUB_OFFLINE=1 unless set otherwise). The JSON names what was used.
- In-process: the service's own pipeline (`pipeline.runner.run_pipeline`, the code a worker runs)
  called directly, models loaded and warmed on a 30 s clip before the clock starts, for every
  compute type x batch size (default float16, int8_float16 x 8, 16, 32). The first configuration
  runs every stage; the others run transcribe + align only (`--matrix-stages asr`, the default:
  the ASR batch size and compute type do not change the diarization, and a full matrix of 1 h
  runs does not fit a 10-minute device slot), or every stage with `--matrix-stages all`.
- Through the service: a real gateway and Celery worker process with the first configuration; a
  30 s warm-up job (models load lazily in the worker), then the file: submit to terminal event,
  the job record's queued and running seconds, the result's stage timings, and the overhead in %
  of the service's wall time over the in-process one.
- Per run: stage seconds, RTF (wall / audio seconds), GPU memory peak (NVML device memory used,
  which includes CTranslate2's allocations; `torch.cuda.max_memory_allocated` for torch's part)
  and GPU utilisation (NVML, sampled every 0.1 s: mean and max over the run and per stage). NVML
  is read through `nvidia-ml-py` (`pynvml`, the dev extra); without it or without a GPU the JSON
  says "utilisation unavailable".
- On CPU, compute types CTranslate2 cannot run there (float16, int8_float16) are replaced by int8
  with a note in the JSON.
- The JSON is rewritten (temp file + rename) after every run, so a run cut short keeps what it
  measured; `--budget-s` (default 540) stops starting new configurations after that many seconds.

Target (recorded in the JSON): on one H100/H200 with the hub set, 1 h of audio, all stages, <= 40 s.
Not a test: nothing asserts on these numbers.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from common import REPO, loop_audio, sample_wav, write_json_atomic

MiB = 1024 * 1024
#: Hub models the target is stated for (docs/MODELS.md).
HUB_ASR = "large-v3-turbo"
HUB_ALIGN = "WAV2VEC2_ASR_BASE_960H"
HUB_DIARIZE = "pyannote/speaker-diarization-community-1"
#: The target: one H100/H200, hub set, 1 h of audio, all stages, at most this many seconds.
TARGET_WALL_S = 40.0
TARGET_AUDIO_S = 3600.0
TARGET_GPUS = ("H100", "H200")
#: Stage order of a one-chunk run (`Transcript.timings` keys), used to place stages on the clock.
STAGE_ORDER = ("decode", "plan", "transcribe", "align", "diarize", "merge")
PACKAGES = ("torch", "ctranslate2", "faster-whisper", "whisperx", "pyannote.audio", "torchaudio", "nvidia-ml-py")


# --- NVML ---------------------------------------------------------------------------------------


class Nvml:
    """GPU utilisation and device memory through NVML (`pynvml` from nvidia-ml-py), when it can be read.

    `available` is False (and `why` says why) without the package, a driver or a GPU.
    """

    def __init__(self, index: int) -> None:
        self.available, self.why, self.handle, self.lib = False, "", None, None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.lib = pynvml
            self.available = True
        except ImportError:
            self.why = "utilisation unavailable: nvidia-ml-py (pynvml) is not installed"
        except Exception as e:  # NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, no such device
            self.why = f"utilisation unavailable: NVML cannot be read ({type(e).__name__})"

    def sample(self) -> tuple[float, float]:
        """(GPU utilisation %, device memory used MiB) now."""
        assert self.lib is not None
        util = self.lib.nvmlDeviceGetUtilizationRates(self.handle)
        mem = self.lib.nvmlDeviceGetMemoryInfo(self.handle)
        return float(util.gpu), float(mem.used) / MiB

    def driver(self) -> str | None:
        """The driver version, if NVML answers."""
        if not self.available or self.lib is None:
            return None
        value = self.lib.nvmlSystemGetDriverVersion()
        return value.decode() if isinstance(value, bytes) else str(value)


class Sampler(threading.Thread):
    """Samples NVML every `interval_s` seconds until stopped: [(perf_counter s, util %, memory MiB)]."""

    def __init__(self, nvml: Nvml, interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.nvml, self.interval_s = nvml, interval_s
        self.samples: list[tuple[float, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while self.nvml.available and not self.stop.is_set():
            util, mem = self.nvml.sample()
            self.samples.append((time.perf_counter(), util, mem))
            time.sleep(self.interval_s)

    def summary(self, t0: float, timings: dict[str, float]) -> dict[str, Any]:
        """Mean/max utilisation and peak memory over the run; mean utilisation per stage.

        Stages are placed on the clock by their summed timings in `STAGE_ORDER` from `t0`: exact for a
        one-chunk run (1 h is one chunk at the default CHUNK_BYTES).
        """
        if not self.samples:
            return {"gpu_util": self.nvml.why or "utilisation unavailable: no samples"}
        utils = [u for _, u, _ in self.samples]
        per_stage: dict[str, float] = {}
        start = t0
        for stage in STAGE_ORDER:
            if stage not in timings:
                continue
            end = start + timings[stage]
            inside = [u for t, u, _ in self.samples if start <= t < end]
            if inside:
                per_stage[stage] = round(sum(inside) / len(inside), 1)
            start = end
        return {
            "gpu_util_mean_pct": round(sum(utils) / len(utils), 1),
            "gpu_util_max_pct": max(utils),
            "gpu_util_mean_pct_by_stage": per_stage,
            "gpu_mem_used_peak_mib": round(max(m for _, _, m in self.samples), 1),
            "nvml_samples": len(self.samples),
        }


# --- models -------------------------------------------------------------------------------------


@dataclass
class ModelSet:
    """Which model each stage uses, as settings; `hub` says whether it is the target's hub set."""

    asr: str  # ASR_MODEL ("" = the packaged tiny.en on CPU)
    align_backend: str  # whisper | wav2vec2
    align_model: str  # ALIGN_MODEL
    diarize: str  # DIARIZE_PIPELINE ("" = <MODELS_DIR>/offline-diarization)
    notes: list[str] = field(default_factory=list)

    @property
    def hub(self) -> bool:
        """Every stage on the hub set the target is stated for."""
        return self.asr == HUB_ASR and self.align_backend == "wav2vec2" and self.diarize == HUB_DIARIZE

    @property
    def label(self) -> str:
        """`hub` (every stage), `offline` (none) or `mixed`."""
        parts = [self.asr == HUB_ASR, self.align_backend == "wav2vec2", self.diarize == HUB_DIARIZE]
        return "hub" if all(parts) else "mixed" if any(parts) else "offline"

    def env(self, models_dir: Path) -> dict[str, str]:
        """The settings as environment variables (for the service's processes)."""
        return {
            "ASR_MODEL": self.asr, "ALIGN_BACKEND": self.align_backend, "ALIGN_MODEL": self.align_model,
            "DIARIZE_PIPELINE": self.diarize, "MODELS_DIR": str(models_dir),
        }  # fmt: skip


def pick_models(choice: str, models_dir: Path) -> ModelSet:
    """The hub model of each stage where it is in the local cache (`auto`), all of them (`hub`), or none
    (`offline`). Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    from whisperx_service.config import ModelsSettings, Settings
    from whisperx_service.pipeline.models import loaders

    def cached_asr() -> bool:
        try:
            from faster_whisper.utils import download_model

            download_model(HUB_ASR, local_files_only=True)
            return True
        except Exception:
            return False

    def cached_align() -> bool:
        import torchaudio

        # Where `loaders.load_aligner` looks for a torchaudio aligner's checkpoint.
        bundle = getattr(torchaudio.pipelines, HUB_ALIGN)
        name = Path(str(getattr(bundle, "_path", HUB_ALIGN))).name
        return (loaders.align_cache_dir(Settings(models=ModelsSettings(dir=models_dir))) / name).is_file()

    def cached_diarize() -> bool:
        return isinstance(try_to_load_from_cache(HUB_DIARIZE, "config.yaml"), str)

    found = {"asr": cached_asr(), "align": cached_align(), "diarize": cached_diarize()}
    if choice == "hub":
        use = dict.fromkeys(found, True)
    elif choice == "offline":
        use = dict.fromkeys(found, False)
    else:
        use = found
    ms = ModelSet(
        asr=HUB_ASR if use["asr"] else "",
        align_backend="wav2vec2" if use["align"] else "whisper",
        align_model=HUB_ALIGN if use["align"] else "",
        diarize=HUB_DIARIZE if use["diarize"] else "",
    )
    for stage, ok in found.items():
        if choice == "auto" and not ok:
            ms.notes.append(f"{stage}: hub model not in the local cache; the offline model is used")
    return ms


class StageModels:
    """A model provider (`pipeline.models.provider.ModelProvider`) with the ASR of one cache and the
    aligner and diarizer of another, so a compute type change reloads only the ASR."""

    def __init__(self, asr_cache: Any, shared: Any) -> None:
        self.asr_cache, self.shared = asr_cache, shared
        self.loads: list[str] = []

    @property
    def device(self) -> str:
        """`cuda` or `cpu`."""
        return str(self.asr_cache.device)

    def asr(self) -> Any:
        """The ASR pipeline of this compute type."""
        return self.asr_cache.asr()

    def aligner(self, language: str) -> tuple[Any, Any]:
        """The shared wav2vec2 aligner."""
        return self.shared.aligner(language)  # type: ignore[no-any-return]

    def diarizer(self) -> Any:
        """The shared diarization pipeline."""
        return self.shared.diarizer()

    def describe(self, language: str | None) -> dict[str, str]:
        """Model names per stage."""
        return self.asr_cache.describe(language)  # type: ignore[no-any-return]


# --- runs ---------------------------------------------------------------------------------------


def settings_for(device: str, compute_type: str, batch_size: int, ms: ModelSet, models_dir: Path) -> Any:
    """Service `Settings` for one configuration."""
    from whisperx_service.config import (
        AlignBackend,
        AlignSettings,
        AsrSettings,
        Device,
        DiarizeSettings,
        ModelsSettings,
        Settings,
    )

    return Settings(
        asr=AsrSettings(model=ms.asr, device=Device(device), compute_type=compute_type, batch_size=batch_size),
        align=AlignSettings(backend=AlignBackend(ms.align_backend), model=ms.align_model),
        diarize=DiarizeSettings(pipeline=ms.diarize),
        models=ModelsSettings(dir=models_dir),
    )


def run_once(
    src: Path, work: Path, models: StageModels, settings: Any, diarize: bool, num_speakers: int | None, nvml: Nvml
) -> dict[str, Any]:
    """One in-process pipeline run of `src`; its numbers."""
    import torch

    from whisperx_service.domain.jobs import JobOptions
    from whisperx_service.pipeline.plan import JobPaths
    from whisperx_service.pipeline.runner import run_pipeline

    shutil.rmtree(work, ignore_errors=True)
    paths = JobPaths(work=work / "work", chunks=work / "chunks")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    sampler = Sampler(nvml)
    sampler.start()
    t0, cpu0 = time.perf_counter(), time.process_time()
    tr = run_pipeline(
        src, paths, JobOptions(diarize=diarize, num_speakers=num_speakers if diarize else None), models, settings,
        lambda *a: None,
    )  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sampler.stop.set()
    sampler.join()
    shutil.rmtree(work, ignore_errors=True)
    words = sum(len(s.words) for s in tr.segments)
    return {
        "audio_s": tr.duration,
        "wall_s": round(wall, 2),
        "rtf": round(wall / tr.duration, 4) if tr.duration else None,
        "x_realtime": round(tr.duration / wall, 1) if wall else None,
        "cpu_s": round(cpu, 1),
        "stage_s": tr.timings,
        "stages": ["transcribe", "align", *(["diarize"] if diarize else [])],
        "chunks": tr.chunks,
        "language": tr.language,
        "segments": len(tr.segments),
        "words": words,
        "speakers": len(tr.speakers),
        "torch_cuda_peak_allocated_mib": round(torch.cuda.max_memory_allocated() / MiB, 1) if cuda else None,
        **sampler.summary(t0, tr.timings),
    }


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn()` takes."""
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 2)


def free_gpu() -> None:
    """Drop unreferenced models and hand cached CUDA memory back."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- main ---------------------------------------------------------------------------------------


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide the numbers."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info(nvml: Nvml) -> dict[str, Any]:
    """The accelerator (or CPU) the run used."""
    import torch

    info: dict[str, Any] = {"cuda": torch.cuda.is_available(), "cpus": os.cpu_count(), "platform": platform.platform()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {
            "name": torch.cuda.get_device_name(0),
            "memory_mib": round(props.total_memory / MiB),
            "capability": f"{props.major}.{props.minor}",
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": nvml.driver(),
        }
    else:
        info["name"] = f"CPU ({platform.processor() or platform.machine()})"
    return info


def usable_compute_types(device: str, asked: list[str]) -> tuple[list[str], list[str]]:
    """The compute types CTranslate2 runs on `device`, and notes for those replaced."""
    import ctranslate2

    supported = set(ctranslate2.get_supported_compute_types(device))
    keep = [c for c in asked if c in supported]
    notes = [f"compute type {c} is not supported on {device} by CTranslate2; left out" for c in asked if c not in keep]
    if not keep:
        fallback = "int8" if device == "cpu" else "float16"
        keep = [fallback]
        notes.append(f"fell back to {fallback} on {device}")
    return keep, notes


def resolve_redis(asked: str | None, folder: Path) -> tuple[str | None, Any, str | None]:
    """The Redis for the service: `asked`, else REDIS_URL or 127.0.0.1:6379/8 if one answers, else a
    private redis-server. Returns (url or None, a process to stop or None, a note)."""
    from service import redis_answers, start_private_redis

    if asked:
        return (asked, None, None) if redis_answers(asked) else (None, None, f"no Redis answers at {asked}")
    for url in (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/8"):
        if url and redis_answers(url):
            return url, None, None
    started = start_private_redis(folder)
    if started is None:
        return None, None, "no Redis answers and redis-server is not installed: the service column is skipped"
    return started[0], started[1], "a private redis-server was started for the run"


def main() -> None:
    """Run the GPU benchmark and write its JSON (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results-gpu.json")
    ap.add_argument("--audio", type=Path, help="a file to use instead of the looped sample call")
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the looped sample call (min)")
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--compute-types", default="float16,int8_float16")
    ap.add_argument("--model-set", choices=["auto", "hub", "offline"], default="auto")
    ap.add_argument("--models-dir", type=Path, default=Path(os.environ.get("MODELS_DIR", REPO / "models")))
    ap.add_argument("--matrix-stages", choices=["asr", "all"], default="asr")
    ap.add_argument("--num-speakers", type=int, default=None, help="default: 2 for the sample call, else unknown")
    ap.add_argument("--no-service", action="store_true", help="skip the run through a gateway and worker")
    ap.add_argument("--redis-url", default=None, help="default: REDIS_URL or 127.0.0.1:6379/8, else a private one")
    ap.add_argument("--budget-s", type=float, default=540.0, help="start no new configuration after this (s)")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    started = time.perf_counter()
    import torch

    from whisperx_service.worker.models import ModelCache

    models_dir = args.models_dir.resolve()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    nvml = Nvml(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0) if device == "cuda" else 0)
    if device == "cpu":
        nvml.available, nvml.why = False, "utilisation unavailable: no CUDA device (CPU run)"
    compute_types, notes = usable_compute_types(device, [c.strip() for c in args.compute_types.split(",") if c])
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    ms = pick_models(args.model_set, models_dir)
    notes += ms.notes
    configs = [(c, b) for c in compute_types for b in batch_sizes]

    work = Path(tempfile.mkdtemp(dir=REPO / "bench", prefix="work-gpu-"))
    redis_proc = None
    try:
        sample = sample_wav()
        if args.audio:
            src = args.audio.resolve()
            clip = loop_audio(src, 0.5, work / "clip.wav")
        else:
            src = loop_audio(sample, args.minutes, work / "audio.wav", ["-ar", "16000", "-ac", "1"])
            clip = sample
        num_speakers = args.num_speakers if args.num_speakers or args.audio else 2

        out: dict[str, Any] = {
            "benchmark": "bench/gpu.py",
            "label": "GPU benchmark" if device == "cuda" else "CPU check of the GPU benchmark (not GPU numbers)",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "device": device_info(nvml),
            "versions": versions(),
            "python": platform.python_version(),
            "audio": {
                "file": src.name if args.audio else f"{sample.name} looped to {args.minutes:g} min",
                "num_speakers": num_speakers,
            },
            "models": {
                "set": ms.label,
                "asr": ms.asr or ("tiny.en (packaged)" if device == "cpu" else HUB_ASR),
                "align": f"{ms.align_backend}:{ms.align_model or 'cross-attention'}",
                "diarize": ms.diarize or "offline-diarization (./models)",
            },
            "matrix": {"compute_types": compute_types, "batch_sizes": batch_sizes, "matrix_stages": args.matrix_stages},
            "target": {
                "statement": "one H100/H200, hub set, 1 h of audio, all stages, <= 40 s",
                "wall_s_max": TARGET_WALL_S,
                "audio_s": TARGET_AUDIO_S,
            },
            "notes": notes,
            "in_process": [],
        }
        if nvml.why:
            notes.append(nvml.why)

        def save() -> None:
            write_json_atomic(args.out, out)

        save()

        # Through the service first (a fresh worker on an idle device), with the first configuration.
        ct0, bs0 = configs[0]
        if args.no_service:
            out["service"] = {"skipped": "--no-service"}
        else:
            url, redis_proc, note = resolve_redis(args.redis_url, work / "redis")
            if note:
                notes.append(note)
            if url is None:
                out["service"] = {"skipped": note}
            else:
                from service import BenchService

                env = {"ASR_DEVICE": device, "ASR_COMPUTE_TYPE": ct0, "ASR_BATCH_SIZE": str(bs0), **ms.env(models_dir)}
                svc = BenchService.start(work / "svc", url, env)
                try:
                    fields = {"num_speakers": num_speakers} if num_speakers else {}
                    warm = svc.run_job(clip, **fields)
                    main_run = svc.run_job(src, **fields)
                finally:
                    svc.stop()
                out["service"] = {
                    "config": {"compute_type": ct0, "batch_size": bs0},
                    "worker_ready_s": round(svc.worker_ready_s, 2),
                    "warmup_job": {"wall_s": round(warm.wall_s, 2), "models_loaded": warm.result.get("models_loaded")},
                    "status": main_run.status,
                    "audio_s": main_run.result.get("duration"),
                    "submit_s": round(main_run.submit_s, 2),
                    "wall_s": round(main_run.wall_s, 2),
                    "queued_s": round(main_run.queued_s, 2),
                    "running_s": round(main_run.running_s, 2),
                    "worker_cpu_s": round(main_run.worker_cpu_s, 1),
                    "stage_s": main_run.result.get("timings"),
                    "models_loaded": main_run.result.get("models_loaded"),
                    "rtf": round(main_run.wall_s / main_run.result["duration"], 4)
                    if main_run.result.get("duration")
                    else None,
                }
            save()

        # In-process, configuration by configuration (one ASR load per compute type).
        shared = ModelCache(settings_for(device, compute_types[0], batch_sizes[0], ms, models_dir))
        load_s = {"diarize": timed(shared.diarizer)}
        if ms.align_backend == "wav2vec2":
            load_s["align"] = timed(lambda: shared.aligner("en"))
        out["load_s"] = load_s
        for ct in compute_types:
            cache = ModelCache(settings_for(device, ct, batch_sizes[0], ms, models_dir))
            load_s[f"asr_{ct}"] = timed(cache.asr)
            models = StageModels(cache, shared)
            warm_settings = settings_for(device, ct, batch_sizes[0], ms, models_dir)
            run_once(clip, work / "run", models, warm_settings, True, num_speakers, nvml)  # warm-up, not recorded
            for bs in batch_sizes:
                first = (ct, bs) == configs[0]
                if not first and time.perf_counter() - started > args.budget_s:
                    out["in_process"].append({"compute_type": ct, "batch_size": bs, "skipped": "time budget spent"})
                    continue
                full = first or args.matrix_stages == "all"
                run = run_once(
                    src, work / "run", models, settings_for(device, ct, bs, ms, models_dir), full, num_speakers, nvml
                )
                out["in_process"].append({"compute_type": ct, "batch_size": bs, **run})
                print(f"in-process {ct} batch {bs}: {run['wall_s']} s, RTF {run['rtf']}", flush=True)
                save()
            del models, cache
            free_gpu()

        base = out["in_process"][0]
        svc_out = out.get("service", {})
        if "wall_s" in svc_out and "wall_s" in base:
            svc_out["in_process_wall_s"] = base["wall_s"]
            svc_out["overhead_pct"] = round(100 * (svc_out["wall_s"] - base["wall_s"]) / base["wall_s"], 1)
        done = [r for r in out["in_process"] if "wall_s" in r and "diarize" in r["stages"]]
        best = min(done, key=lambda r: r["wall_s"]) if done else None
        gpu_name = str(out["device"].get("name", ""))
        long_enough = bool(best and best["audio_s"] >= TARGET_AUDIO_S)
        applies = ms.hub and any(g in gpu_name for g in TARGET_GPUS) and long_enough
        out["target"] |= {
            "applies": applies,
            "best_all_stages_wall_s": best["wall_s"] if best else None,
            "meets_target": (best["wall_s"] <= TARGET_WALL_S) if applies and best else None,
        }
        if not applies:
            out["target"]["why_not_applicable"] = "needs an H100/H200, the hub set and >= 1 h of audio"
        out["total_s"] = round(time.perf_counter() - started, 1)
        save()
        print(f"wrote {args.out}")
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
