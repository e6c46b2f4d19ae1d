"""The languages a loaded ASR model transcribes, and whether each one's words can be aligned.

The list is faster-whisper's own (`WhisperModel.supported_languages`: Whisper's 100 language codes
for a multilingual model, `["en"]` for an English-only `.en` one); names come from WhisperX's
table (`whisperx.utils.LANGUAGES`). Alignment, by ALIGN_BACKEND:
- `whisper`: the ASR model's own cross-attention (`stages/align_whisper.py`) works for every
  language it transcribes.
- `wav2vec2`: a language has word times when ALIGN_MODEL is set (it is used for every language),
  or WhisperX has a default model for it (`whisperx.alignment.DEFAULT_ALIGN_MODELS_TORCH` /
  `_HF`) and that model can load: with HF_HUB_OFFLINE set, only when it is in the local model
  cache (`<MODELS_DIR>/align`). A language without one fails its aligned jobs (`model_load_failed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.domain.workers import LanguageSupport
from whisperx_service.pipeline.models import loaders


def _cached(name: str, cache: Path) -> bool:
    """True when the wav2vec2 model `name` (a torchaudio bundle or a hub id) is in `cache`."""
    import torchaudio
    from huggingface_hub import try_to_load_from_cache

    if name in torchaudio.pipelines.__all__:
        bundle = getattr(torchaudio.pipelines, name)
        return (cache / Path(str(getattr(bundle, "_path", name))).name).is_file()
    return isinstance(try_to_load_from_cache(name, "config.json", cache_dir=str(cache)), str)


def supported_languages(asr: Any, settings: Settings) -> list[LanguageSupport]:
    """What `asr` (a loaded WhisperX pipeline) transcribes, in faster-whisper's order.

    Args:
        asr: the WhisperX pipeline; its `model` is the faster-whisper `WhisperModel`.
        settings: ALIGN_BACKEND, ALIGN_MODEL and MODELS_DIR decide the alignment of each.
    Returns:
        One `LanguageSupport` per language, with its alignment backend and wav2vec2 model label.
    """
    from whisperx.utils import LANGUAGES

    codes: list[str] = list(asr.model.supported_languages)
    backend = settings.align.backend
    out = []
    for code in codes:
        model: str | None = None
        if backend is AlignBackend.whisper:
            ok = True
        else:
            name = settings.align.model or loaders.default_align_model(code)
            local = name is not None and loaders.is_local_path(name) and Path(name).expanduser().is_dir()
            ok = name is not None and (
                local or not loaders.hub_offline() or _cached(name, loaders.align_cache_dir(settings))
            )
            model = loaders.model_label(name) if ok and name else None
        out.append(
            LanguageSupport(
                code=code,
                name=LANGUAGES.get(code, code),
                alignment=ok,
                align_backend=backend.value if ok else None,
                align_model=model,
            )
        )
    return out
