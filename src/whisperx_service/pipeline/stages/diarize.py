"""Diarize: pyannote speaker turns and each speaker's centroid embedding for one chunk."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from whisperx_service.domain.jobs import JobOptions
from whisperx_service.domain.transcript import SpeakerTurn
from whisperx_service.pipeline.models.provider import ModelProvider


def diarize(
    audio: np.ndarray, options: JobOptions, models: ModelProvider, progress: Callable[[float], None]
) -> tuple[list[SpeakerTurn], dict[str, list[float] | None]]:
    """Speaker turns (seconds from the start of `audio`) and each speaker's centroid embedding."""
    df, embeddings = models.diarizer()(
        audio,
        num_speakers=options.num_speakers,
        min_speakers=options.min_speakers,
        max_speakers=options.max_speakers,
        return_embeddings=True,
        progress_callback=progress,
    )
    turns = [
        SpeakerTurn(start=float(r.start), end=float(r.end), speaker=str(r.speaker)) for r in df.itertuples(index=False)
    ]
    clean: dict[str, list[float] | None] = {}
    for t in turns:
        vec = (embeddings or {}).get(t.speaker)
        clean[t.speaker] = [float(x) for x in vec] if vec is not None and np.all(np.isfinite(vec)) else None
    return turns, clean
