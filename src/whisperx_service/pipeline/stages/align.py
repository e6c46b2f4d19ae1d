"""Align: word timestamps with the configured backend (Whisper's cross-attention, or WhisperX's wav2vec2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.pipeline.models.provider import ModelProvider


def align(
    segments: list[dict[str, Any]],
    audio: np.ndarray,
    language: str,
    models: ModelProvider,
    settings: Settings,
    progress: Callable[[float], None],
) -> list[dict[str, Any]]:
    """Word timestamps with the configured backend; segments keep WhisperX's dict shape.

    Returns:
        Segments `{start, end, text, words: [{word, start?, end?, score?}]}`; words the
        aligner could not time have no start/end (they are interpolated afterwards).
    """
    if settings.align.backend == AlignBackend.whisper:
        from whisperx_service.pipeline.stages.align_whisper import align_with_whisper

        return align_with_whisper(models.asr(), segments, audio, language, progress)
    import whisperx

    model, meta = models.aligner(language)
    out = whisperx.align(
        segments, model, meta, audio, models.device, return_char_alignments=False, progress_callback=progress
    )
    return list(out["segments"])
