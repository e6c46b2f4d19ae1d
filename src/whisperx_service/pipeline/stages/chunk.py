"""One chunk through every model stage, and its checkpoint (`chunks/<n>.json`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.domain.script import Script
from whisperx_service.domain.transcript import SpeakerTurn, Word
from whisperx_service.pipeline.audio.chunks import Chunk
from whisperx_service.pipeline.audio.pcm import read_window
from whisperx_service.pipeline.audio.windows import Window, chunk_windows
from whisperx_service.pipeline.models.provider import ModelProvider
from whisperx_service.pipeline.post.speakers import assign_speakers
from whisperx_service.pipeline.stages.align import align
from whisperx_service.pipeline.stages.diarize import diarize
from whisperx_service.pipeline.stages.script import anchor_text, clip_to_speech, timed_segments
from whisperx_service.pipeline.stages.transcribe import transcribe
from whisperx_service.pipeline.stages.words import words_of_segments
from whisperx_service.transcripts.text import word_separator


@dataclass
class ChunkResult:
    """One chunk's checkpoint: everything the merge needs, times absolute (seconds).

    Each word's `word` starts with the text that precedes it in WhisperX's segment text
    (`words_of_segments`); the final transcript's words are stripped (`build_segments`).

    Speaker labels are the chunk's own (its diarizer's); `embeddings` maps each to its centroid.
    """

    chunk: Chunk
    words: list[Word]
    turns: list[SpeakerTurn]
    embeddings: dict[str, list[float] | None]
    timings: dict[str, float] = field(default_factory=dict)
    attempt: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the `chunks/<n>.json` format)."""
        return {
            "chunk": self.chunk.to_dict(),
            "words": [w.model_dump() for w in self.words],
            "turns": [t.model_dump() for t in self.turns],
            "embeddings": self.embeddings,
            "timings": self.timings,
            "attempt": self.attempt,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ChunkResult:
        """Inverse of `to_json`."""
        return cls(
            chunk=Chunk.from_dict(d["chunk"]),
            words=[Word.model_validate(w) for w in d["words"]],
            turns=[SpeakerTurn.model_validate(t) for t in d["turns"]],
            embeddings=d["embeddings"],
            timings=d.get("timings", {}),
            attempt=int(d.get("attempt", 0)),
        )


def process_chunk(
    chunk: Chunk,
    pcm: np.ndarray,
    windows: list[Window],
    language: str,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: Callable[[Stage, float], None],
    *,
    script: Script | None = None,
    reuse: ChunkResult | None = None,
    first: bool = True,
    last: bool = True,
) -> ChunkResult:
    """Transcribe, align and diarize one chunk (read from the memory-mapped PCM).

    What runs depends on the job: a `diarize` job only diarizes (no words); a re-diarization
    (`reuse`, the earlier job's checkpoint of this chunk) keeps its words and times and only
    diarizes; an `align` job aligns `script` (timed segments cut to the chunk, or plain text
    anchored on the chunk's transcription, `stages/script.py`).

    Args:
        windows: the job's ASR windows (absolute seconds, `Plan.windows`); the chunk decodes
            those it holds, clipped to its edges.
        script: the transcript of an `align` job.
        reuse: the earlier job's result for this chunk (a re-diarization).
        first, last: the chunk is the file's first / last (where plain text is placed).

    Returns:
        The chunk's words (absolute seconds, speakers by the chunk's own labels, each with the
        text preceding it in WhisperX's segment text), turns and per-speaker embeddings.
    """
    timings: dict[str, float] = {}
    # The models read the chunk from the whole second at or before its start (a whole number of
    # samples, so window and word times convert between chunk and file time exactly).
    origin = float(math.floor(chunk.start_s))
    audio = read_window(pcm, origin, chunk.end_s)
    if reuse is not None:
        words = [w.model_copy(update={"speaker": None}) for w in reuse.words]
    elif not options.runs_asr:
        words = []
    else:
        words = _words(chunk, audio, origin, windows, language, options, models, settings, progress, timings,
                       script=script, first=first, last=last)  # fmt: skip
    turns: list[SpeakerTurn] = []
    embeddings: dict[str, list[float] | None] = {}
    if options.diarize:
        t = time.perf_counter()
        progress(Stage.diarize, 0.0)
        local, embeddings = diarize(audio, options, models, lambda p: progress(Stage.diarize, p))
        turns = [SpeakerTurn(start=x.start + origin, end=x.end + origin, speaker=x.speaker) for x in local]
        words = assign_speakers(words, turns)
        timings["diarize"] = time.perf_counter() - t
    return ChunkResult(chunk, words, turns, embeddings, {k: round(v, 3) for k, v in timings.items()})


def _words(
    chunk: Chunk,
    audio: np.ndarray,
    origin: float,
    windows: list[Window],
    language: str,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: Callable[[Stage, float], None],
    timings: dict[str, float],
    *,
    script: Script | None,
    first: bool,
    last: bool,
) -> list[Word]:
    """The chunk's words: transcribed (or the script's, placed), then aligned; times into `timings`.

    The script's words end within the speech region they start in (`clip_to_speech`)."""
    segments: list[dict[str, Any]] = []
    if script is not None and script.timed:
        segments = timed_segments(script, origin, chunk.start_s, chunk.end_s)
    else:
        t = time.perf_counter()
        progress(Stage.transcribe, 0.0)
        own = chunk_windows(windows, chunk.start_s, chunk.end_s, origin)
        segments = transcribe(
            models.asr(), audio, language, options, settings, lambda p: progress(Stage.transcribe, p), own
        )
        timings["transcribe"] = time.perf_counter() - t
        if script is not None:
            segments = anchor_text(script.words(), segments, first=first, last=last)
    if (options.align or script is not None) and segments:
        t = time.perf_counter()
        progress(Stage.align, 0.0)
        segments = align(segments, audio, language, models, settings, lambda p: progress(Stage.align, p))
        timings["align"] = time.perf_counter() - t
    words = words_of_segments(segments, origin, chunk.end_s, word_separator(language))
    if script is not None:
        words = clip_to_speech(words, [(float(a), float(b)) for w in windows for a, b in w["segments"]])
    return words
