"""What a worker reports about itself: its pool processes' device and models, and a failed start.

A worker (`whisperx-service worker`, named `<host>:<pid>` of its main process) runs
WORKER_CONCURRENCY pool processes; each loads its models at start (`worker/warm.py`) and is
`warm` once every model a job needs with the current settings is loaded. The gateway's `/readyz`
reads these records from Redis (`store/workers.py`); a worker that cannot load a model records a
`WorkerFailure` before it exits, so `/readyz` can say why no worker is ready. No field holds a
server path: models are named by `pipeline.models.loaders.model_label`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class ProcessState(StrEnum):
    """Where a pool process is in its start."""

    loading = "loading"  # loading its models, then running them once on a short clip; it takes no job yet
    warm = "warm"  # every model a job needs is loaded; it takes jobs
    failed = "failed"  # a model cannot be loaded; the worker stops (exit code 1)


class DeviceInfo(BaseModel):
    """The device a pool process runs its models on.

    `name` and the memory fields are set on CUDA only (`torch.cuda.get_device_name`,
    `torch.cuda.mem_get_info`: bytes of the whole GPU, every process on it counted).
    """

    type: str = Field(description="`cpu` or `cuda`")
    index: int | None = Field(None, description="CUDA device index")
    name: str | None = Field(None, description="GPU model name, e.g. `NVIDIA H100 80GB HBM3`")
    memory_total_bytes: int | None = Field(None, description="GPU memory in all (bytes)")
    memory_used_bytes: int | None = Field(None, description="GPU memory in use by every process on it (bytes)")


class ModelStatus(BaseModel):
    """One model a pool process needs: which stage uses it, its name, and whether it is loaded."""

    stage: str = Field(description="`asr`, `align` or `diarize`")
    name: str = Field(description="the model's name (a hub id, or a local directory's last component)")
    warm: bool = Field(description="loaded in memory and ready for a job")


class LanguageSupport(BaseModel):
    """A language the process's ASR model transcribes, and whether its words can be aligned."""

    code: str = Field(description="ISO 639-1 code as Whisper names it (`en`, `de`; `yue`, `haw`)")
    name: str = Field(description="English name, as WhisperX's table has it (`english`)")
    alignment: bool = Field(description="word times are available for it with the worker's ALIGN_BACKEND")
    align_backend: str | None = Field(None, description="`whisper` (cross-attention) or `wav2vec2`; None without")
    align_model: str | None = Field(None, description="the wav2vec2 model (`wav2vec2` backend only), never a path")


class WorkerProcess(BaseModel):
    """One pool process of a worker, as it records itself in Redis."""

    name: str = Field(description="`<host>:<pid>` of the pool process (the lease owner of its jobs)")
    state: ProcessState
    device: DeviceInfo | None = None
    models: list[ModelStatus] = Field(default_factory=list)
    load_s: float | None = Field(None, description="seconds its models took to load at start")
    warmup_s: float | None = Field(None, description="seconds of the pipeline's first run on a short clip at start")
    languages: list[LanguageSupport] = Field(
        default_factory=list, description="what its ASR model transcribes (set once the ASR model is loaded)"
    )


class WorkerFailure(BaseModel):
    """Why a worker could not start: the model, and what the operator should do. No server paths."""

    worker: str = Field(description="`<host>:<pid>` of the worker's main process")
    model: str = Field(description="`<stage>:<name>` of the model that cannot be loaded")
    reason: str = Field(description="one sentence: what failed and what to do")
    at: float = Field(description="when it failed (seconds since the epoch)")


class WorkerStatus(BaseModel):
    """A live worker (a recent heartbeat) and its pool processes, as `/readyz` lists it."""

    name: str = Field(description="`<host>:<pid>` of the worker's main process")
    warm: bool = Field(description="at least one of its pool processes has every model loaded")
    processes: list[WorkerProcess] = Field(default_factory=list)
