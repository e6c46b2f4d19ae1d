"""What a worker needs before it takes a job: the models of the current settings, how each loads
into the process's cache, and, when one cannot, the operator's reason (which model, what to do;
never a server path). `warm.py` loads them at a pool process's start.
"""

from __future__ import annotations

from dataclasses import dataclass

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.domain.workers import ModelStatus
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models import loaders
from whisperx_service.worker.models import ModelCache

#: Language whose wav2vec2 aligner loads at start when ASR_LANGUAGE is unset (the `models download` default).
DEFAULT_WARM_LANGUAGE = "en"
#: Readable stage names for the failure reason.
_STAGE_WORDS = {"asr": "ASR", "align": "alignment", "diarize": "diarization"}


@dataclass(frozen=True, slots=True)
class NeededModel:
    """A model a job needs with the current settings.

    stage: `asr`, `align` or `diarize`; name: what the loader resolves (hub id or absolute directory);
    setting: the environment variable that chooses it; language: the aligner's language (align only).
    """

    stage: str
    name: str
    setting: str
    language: str | None = None

    @property
    def label(self) -> str:
        """The model's name without any server path (`loaders.model_label`)."""
        return loaders.model_label(self.name)

    @property
    def local(self) -> bool:
        """Whether it loads from a local directory (else from a hub or its local cache)."""
        return loaders.is_local_path(self.name)

    def status(self, warm: bool) -> ModelStatus:
        """This model as `/readyz` lists it."""
        return ModelStatus(stage=self.stage, name=f"{self.label}:{self.language}" if self.language else self.label,
                           warm=warm)  # fmt: skip


class StartFailed(Exception):
    """A model a job needs cannot be loaded; the worker must not take jobs.

    Attributes:
        model: `<stage>:<name>` (no server path); reason: one sentence for operators and `/readyz`
        (what failed and what to do, no server path); detail: the loader's message (for the log only).
    """

    def __init__(self, model: str, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.model, self.reason, self.detail = model, reason, detail


def warm_language(settings: Settings) -> str:
    """The language whose aligner loads at start: ASR_LANGUAGE, else English; other languages load on first use."""
    return settings.asr.language or DEFAULT_WARM_LANGUAGE


def needed_models(settings: Settings) -> list[NeededModel]:
    """The models a job needs with these settings, in load order: ASR (with its VAD), the wav2vec2
    aligner of `warm_language` when ALIGN_BACKEND=wav2vec2 (the whisper backend needs no other
    model), and the diarization pipeline (jobs diarize unless they ask not to).

    Raises:
        StartFailed: a model cannot even be named (ASR_DEVICE=cuda without a GPU, no packaged CPU
            model, no wav2vec2 aligner for the language).
    """
    try:
        out = [NeededModel("asr", loaders.resolve_asr_model(settings), "ASR_MODEL")]
        if settings.align.backend is AlignBackend.wav2vec2:
            language = warm_language(settings)
            name = settings.align.model or loaders.default_align_model(language)
            if name is None:
                raise ModelLoadFailed(
                    f"no wav2vec2 alignment model for language {language!r}: set ALIGN_MODEL or ALIGN_BACKEND=whisper"
                )
            out.append(NeededModel("align", name, "ALIGN_MODEL", language))
        out.append(NeededModel("diarize", loaders.resolve_diarization_pipeline(settings), "DIARIZE_PIPELINE"))
    except ModelLoadFailed as exc:  # these messages name settings, never paths
        raise StartFailed("settings", f"the worker cannot start: {exc.message}", exc.message) from exc
    return out


def failure_reason(model: NeededModel, settings: Settings) -> str:
    """What to tell the operator when `model` cannot be loaded: which model, and what to do. No server path.

    Pyannote's diarization pipelines on the Hugging Face hub are gated: they load only with a token
    whose account accepted the model's conditions on its page (https://hf.co/<repo>).
    """
    what = f"cannot load the {_STAGE_WORDS[model.stage]} model '{model.label}' ({model.setting})"
    gated = model.stage == "diarize" and not model.local
    page = f"https://hf.co/{model.name}"
    token = settings.diarize.hf_token is not None
    if model.local:
        fixes = {
            "asr": "point ASR_MODEL at a CTranslate2 Whisper model directory",
            "align": "point ALIGN_MODEL at a Wav2Vec2ForCTC model directory, or run `whisperx-service models prepare`",
            "diarize": "run `whisperx-service models prepare`, or point DIARIZE_PIPELINE at a pyannote pipeline",
        }
        return f"{what}: its local directory is missing or incomplete; {fixes[model.stage]}"
    if loaders.hub_offline():
        fix = "run `whisperx-service models download` with network access"
        if gated:
            fix += f", with HF_TOKEN set and the conditions accepted at {page}"
        return f"{what}: it is not in the local model cache and HF_HUB_OFFLINE is set; {fix}"
    if gated and not token:
        return f"{what}: set HF_TOKEN and accept the conditions at {page}"
    if gated:
        return (
            f"{what}: check that HF_TOKEN is valid, that its account accepted the conditions at {page}, "
            "and that the hub can be reached"
        )
    return (
        f"{what}: check that {model.setting} names a model on the hub and that the hub can be reached, "
        "or run `whisperx-service models download` where it can"
    )


def load(cache: ModelCache, model: NeededModel) -> None:
    """Load one model into the process's cache (a no-op when it is there already).

    Raises:
        ModelLoadFailed: the loader's error.
    """
    if model.stage == "asr":
        cache.asr()
    elif model.stage == "align":
        assert model.language is not None
        cache.aligner(model.language)
    else:
        cache.diarizer()
