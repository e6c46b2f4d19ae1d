"""Per-process model cache: each model loads once in the worker's pool process and stays.

`warm.py` fills it at the pool process's start with every model a job needs (in
`worker_process_init`, with Celery's `worker_proc_alive_timeout` raised to cover it); a model no
job needed then (another language's aligner) loads on first use. Never per job. The cache records
every load, so a job can report which models it had to load (`models_loaded` in the result, by
name, never a server path; its seconds in `wxs_model_load_seconds{kind}`) and a test can prove the
first job on a warm worker loads nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.pipeline.models import loaders
from whisperx_service.worker.metrics import worker_metrics
from whisperx_service.worker.stall import not_counted

log = structlog.get_logger(__name__)


class ModelCache:
    """Lazily loaded models of one process, keyed by what distinguishes them.

    Thread-safe (a lock around loads); the worker runs one job per process at a time anyway.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Every load this process made, in order: "asr:<name>", "align:<lang>", "diarize:<name>"; a
        #: local directory is named by its last component (`loaders.model_label`), never its path.
        self.loads: list[str] = []
        self.device = loaders.resolve_device(settings.asr.device)

    def _get(self, key: str, load: Any, label: str | None = None) -> Any:
        with self._lock:
            if key not in self._models:
                t = time.perf_counter()
                with not_counted():  # a first load in a job makes no progress: the stall watchdog waits
                    self._models[key] = load()
                self.loads.append(label or key)
                seconds = time.perf_counter() - t
                worker_metrics().model_load_seconds.labels(kind=key.split(":", 1)[0]).observe(seconds)
                log.info("model_loaded", model=key, seconds=round(seconds, 2))
            return self._models[key]

    def asr(self) -> Any:
        """The WhisperX ASR pipeline (faster-whisper + VAD); one per process.

        Raises:
            ModelLoadFailed: the model cannot be loaded.
        """
        name = loaders.resolve_asr_model(self.settings)
        return self._get(
            f"asr:{name}",
            lambda: loaders.load_asr(self.settings, self.settings.asr.language),
            f"asr:{loaders.model_label(name)}",
        )

    def aligner(self, language: str) -> tuple[Any, Any]:
        """The wav2vec2 alignment model and its metadata for `language`.

        Raises:
            ModelLoadFailed: no model for the language, or it cannot be loaded.
        """
        return self._get(f"align:{language}", lambda: loaders.load_aligner(self.settings, language))

    def diarizer(self) -> Any:
        """The pyannote diarization pipeline (wrapped by WhisperX).

        Raises:
            ModelLoadFailed: the pipeline cannot be loaded.
        """
        name = loaders.resolve_diarization_pipeline(self.settings)
        return self._get(
            f"diarize:{name}", lambda: loaders.load_diarizer(self.settings), f"diarize:{loaders.model_label(name)}"
        )

    def describe(self, language: str | None) -> dict[str, str]:
        """Which model each stage uses, for the result's `models` field: names, never server paths
        (a local directory is named by its last component, see `loaders.model_label`)."""
        out = {
            "asr": loaders.model_label(loaders.resolve_asr_model(self.settings)),
            "vad": self.settings.asr.vad_method.value,
            "align": self.settings.align.backend.value,
            "diarize": loaders.model_label(loaders.resolve_diarization_pipeline(self.settings)),
        }
        if self.settings.align.backend == AlignBackend.wav2vec2:
            align = loaders.model_label(self.settings.align.model) if self.settings.align.model else None
            out["align"] = f"wav2vec2:{align or f'whisperx-default-{language}'}"
        return out


_cache: ModelCache | None = None


def get_model_cache(settings: Settings) -> ModelCache:
    """The process-wide cache, created on first call (in the pool child, after fork)."""
    global _cache
    if _cache is None:
        _cache = ModelCache(settings)
    return _cache
