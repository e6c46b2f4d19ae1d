"""Transcribe: faster-whisper (through WhisperX's batched pipeline) over a chunk's ASR windows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any

import numpy as np

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.errors import TranslationNotSupported
from whisperx_service.pipeline.audio.windows import Window, precomputed_windows


@contextmanager
def _job_asr_options(asr: Any, options: JobOptions) -> Iterator[None]:
    """Apply the job's initial_prompt / hotwords to the shared ASR pipeline, restore afterwards."""
    saved = asr.options
    asr.options = replace(saved, initial_prompt=options.initial_prompt, hotwords=options.hotwords)
    try:
        yield
    finally:
        asr.options = saved


def english_only(asr: Any) -> bool:
    """True when the loaded Whisper model speaks only English (`tiny.en`, `base.en`, ...)."""
    return not bool(asr.model.model.is_multilingual)


def transcribe(
    asr: Any,
    audio: np.ndarray,
    language: str,
    options: JobOptions,
    settings: Settings,
    progress: Callable[[float], None],
    windows: list[Window] | None = None,
) -> list[dict[str, Any]]:
    """faster-whisper over float32 16 kHz `audio` (shape (n,)) in a known language.

    Args:
        windows: the ASR windows to decode, in seconds from the start of `audio`
            (`asr_windows.chunk_windows` of the job's plan); None = WhisperX's own VAD and grouping.

    Returns:
        Segments as WhisperX dicts `{start, end, text}` (one per window) in seconds from the
        start of `audio`; in English when `options.task` is `translate` (Whisper's own task).
    Raises:
        TranslationNotSupported: a translation was asked of an English-only model.
    """
    if options.task == "translate" and english_only(asr):
        raise TranslationNotSupported("translate asked of an English-only ASR model")
    own = nullcontext() if windows is None else precomputed_windows(asr, windows)
    with _job_asr_options(asr, options), own:
        out = asr.transcribe(
            audio,
            batch_size=settings.asr.batch_size,
            language=language,
            task=options.whisper_task,
            chunk_size=settings.asr.window_s,
            progress_callback=progress,
        )
    return list(out["segments"])
