"""What a job fixes once, before its first chunk, and where its intermediate files live.

ffmpeg decodes the source once to 16 kHz PCM on disk (`work/audio.pcm`); the plan cuts it into
overlapping chunks of at most `CHUNK_BYTES` (in silences where the VAD finds one near a cut),
fixes the ASR windows of the whole file (the VAD runs once, over fixed blocks) and the job's
language, and is saved as `chunks/plan.json`. A rerun of the job (after a crash) reads both back,
so it cuts and decodes exactly as the first run did.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.errors import LanguageNotSupported
from whisperx_service.pipeline.audio.chunks import Chunk, plan_chunks, silence_finder
from whisperx_service.pipeline.audio.language import speech_blocks, vote, whisper_detector
from whisperx_service.pipeline.audio.pcm import DecodedAudio, decode_to_pcm, read_window
from whisperx_service.pipeline.audio.windows import Window, grid_windows, speech_regions
from whisperx_service.pipeline.models.provider import ModelProvider
from whisperx_service.pipeline.stages.transcribe import english_only
from whisperx_service.storage.local import atomic_write_json

#: The language of a job that transcribes nothing and was given none (ISO 639-2 `und`).
UNDETERMINED = "und"
#: progress(stage, stage_percent 0-100, chunk index, number of chunks)
ProgressFn = Callable[[Stage, float, int, int], None]


@dataclass(frozen=True)
class JobPaths:
    """Where a job's intermediate files live (all under the job's directory)."""

    work: Path  # decoded audio, removed when the job ends
    chunks: Path  # plan.json and <n>.json checkpoints

    @property
    def pcm(self) -> Path:
        """Decoded 16 kHz mono s16le PCM."""
        return self.work / "audio.pcm"

    @property
    def decoded(self) -> Path:
        """Marker written after the PCM is complete: `{"samples": n}`."""
        return self.work / "audio.json"

    @property
    def plan(self) -> Path:
        """The chunk plan and the job's language: fixed once written, so a rerun cuts the same."""
        return self.chunks / "plan.json"

    def checkpoint(self, index: int) -> Path:
        """One chunk's result."""
        return self.chunks / f"{index}.json"

    def reused(self, index: int) -> Path:
        """A re-diarization's copy of the earlier job's result for one chunk (its words are kept)."""
        return self.chunks / f"{index}.reuse.json"


def decode_once(source: Path, paths: JobPaths, settings: Settings, progress: ProgressFn) -> DecodedAudio:
    """Decode once; a rerun finds the marker and reuses the PCM."""
    if paths.decoded.exists() and paths.pcm.exists():
        samples = int(json.loads(paths.decoded.read_text())["samples"])
        progress(Stage.decode, 100.0, 0, 1)
        return DecodedAudio(paths.pcm, samples)
    paths.work.mkdir(parents=True, exist_ok=True)
    progress(Stage.decode, 0.0, 0, 1)
    decoded = decode_to_pcm(
        source,
        paths.pcm,
        max_duration_s=settings.limits.max_duration_s,
        progress=lambda p: progress(Stage.decode, p, 0, 1),
    )
    atomic_write_json(paths.decoded, {"samples": decoded.samples})
    progress(Stage.decode, 100.0, 0, 1)
    return decoded


@dataclass(frozen=True)
class Plan:
    """What a job fixes once, before its first chunk (`chunks/plan.json`), so a rerun cuts the same.

    chunks: the chunk windows. windows: the ASR windows of the whole file (absolute seconds,
    `asr_windows.grid_windows`). language / language_probability: the job's language (the
    probability only when it was detected).
    """

    chunks: list[Chunk]
    windows: list[Window]
    language: str
    language_probability: float | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (the `plan.json` format)."""
        return {
            "chunks": [c.to_dict() for c in self.chunks],
            "windows": [[w["start"], w["end"], [list(r) for r in w["segments"]]] for w in self.windows],
            "language": self.language,
            "language_probability": self.language_probability,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Plan:
        """Inverse of `to_json`."""
        return cls(
            chunks=[Chunk.from_dict(c) for c in d["chunks"]],
            windows=[{"start": s, "end": e, "segments": [tuple(r) for r in regs]} for s, e, regs in d["windows"]],
            language=d["language"],
            language_probability=d.get("language_probability"),
        )


def asr_windows_of(pcm: np.ndarray, asr: Any, settings: Settings, progress: Callable[[float], None]) -> list[Window]:
    """The ASR windows of the whole file: the pipeline's VAD over fixed blocks, grouped on the grid.

    Args:
        pcm: int16 16 kHz samples, shape (n,).
        asr: the loaded WhisperX pipeline (its `vad_model` and VAD thresholds are used).
        progress: 0-100 as the VAD advances.
    """
    regions = speech_regions(
        pcm,
        asr.vad_model,
        chunk_size=settings.asr.window_s,
        onset=asr._vad_params["vad_onset"],
        offset=asr._vad_params["vad_offset"],
        progress=progress,
    )
    return grid_windows(regions, settings.asr.window_s)


def load_or_make_plan(
    pcm: np.ndarray,
    paths: JobPaths,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: ProgressFn,
) -> Plan:
    """The job's plan: read back from `plan.json`, or made and saved once (atomically).

    Reports as the `vad` stage (chunk 0 of the plan's chunks): 0 when it starts, then the fraction
    of the audio the VAD has scanned (0-100, after each `VAD_BLOCK_S` block), and 100 once the plan
    is saved; 100 at once when a rerun reads it back, so the VAD runs once per job and every chunk
    reuses its windows.
    """
    if paths.plan.exists():
        plan = Plan.from_json(json.loads(paths.plan.read_text()))
        progress(Stage.vad, 100.0, 0, len(plan.chunks))
        return plan
    chunks = plan_chunks(
        len(pcm),
        chunk_bytes=settings.chunk.bytes,
        overlap_s=settings.chunk.overlap_s,
        find_silence=silence_finder(pcm),
        grid_s=settings.asr.window_s,
    )
    progress(Stage.vad, 0.0, 0, len(chunks))
    language, probability = choose_language(pcm, options, models, settings)
    windows = asr_windows_of(pcm, models.asr(), settings, lambda p: progress(Stage.vad, p, 0, len(chunks)))
    plan = Plan(chunks, windows, language, probability)
    atomic_write_json(paths.plan, plan.to_json())
    progress(Stage.vad, 100.0, 0, len(chunks))
    return plan


def choose_language(
    pcm: np.ndarray, options: JobOptions, models: ModelProvider, settings: Settings
) -> tuple[str, float | None]:
    """The job's language: asked for, the model's only one, or detected from speech by vote; a
    `diarize` job detects none (it transcribes nothing): the asked one, else `und` (ISO 639-2's
    "undetermined").

    Raises:
        LanguageNotSupported: an English-only model, and another language was asked for.
    """
    asked = options.language or settings.asr.language
    if options.task == "diarize":
        return asked or UNDETERMINED, None
    asr = models.asr()
    if english_only(asr):
        if asked not in (None, "en"):
            raise LanguageNotSupported(f"the ASR model is English-only; language {asked!r} needs a multilingual model")
        return "en", None
    if asked:
        return asked, None
    language, probability = vote(speech_blocks(pcm), whisper_detector(asr.model))
    if language is None:
        # No block of 5 s of speech anywhere: fall back to Whisper's own guess on the start.
        language = str(asr.detect_language(read_window(pcm, 0.0, 30.0)))
    return language, probability
