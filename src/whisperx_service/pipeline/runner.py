"""Run one job's audio through every stage: decode -> transcribe -> align -> diarize -> merge.

Knows nothing of HTTP, Celery or Redis: it takes a file, the job's options, a model provider and
a progress callback, and returns a `Transcript`. Each stage reports its own 0-100 through
`progress(stage, stage_percent)`; the caller maps that into the job's percent by stage weight.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.domain.transcript import Segment, SpeakerTurn, Transcript, Word
from whisperx_service.errors import PipelineError
from whisperx_service.pipeline import words as wordops
from whisperx_service.pipeline.audio import decode_to_pcm, open_pcm, read_window

ProgressFn = Callable[[Stage, float], None]


class ModelProvider(Protocol):
    """What the runner needs from the model cache (see `worker.models.ModelCache`)."""

    loads: list[str]

    @property
    def device(self) -> str: ...

    def asr(self) -> Any: ...
    def aligner(self, language: str) -> tuple[Any, Any]: ...
    def diarizer(self) -> Any: ...
    def describe(self, language: str | None) -> dict[str, str]: ...


@contextmanager
def _job_asr_options(asr: Any, options: JobOptions) -> Iterator[None]:
    """Apply the job's initial_prompt / hotwords to the shared ASR pipeline, restore afterwards."""
    saved = asr.options
    asr.options = replace(saved, initial_prompt=options.initial_prompt, hotwords=options.hotwords)
    try:
        yield
    finally:
        asr.options = saved


def _english_only(asr: Any) -> bool:
    return not bool(asr.model.model.is_multilingual)


def transcribe(
    asr: Any, audio: np.ndarray, options: JobOptions, settings: Settings, progress: Callable[[float], None]
) -> tuple[list[dict[str, Any]], str]:
    """VAD + faster-whisper over float32 16 kHz `audio` (shape (n,)).

    Returns:
        (segments as WhisperX dicts `{start, end, text}` in seconds, language code).
    """
    language = options.language or settings.asr.language
    if _english_only(asr):
        if language not in (None, "en"):
            raise PipelineError(
                f"the ASR model is English-only; language {language!r} needs a multilingual model",
                code="language_not_supported",
            )
        language = "en"
    with _job_asr_options(asr, options):
        out = asr.transcribe(audio, batch_size=settings.asr.batch_size, language=language, progress_callback=progress)
    return list(out["segments"]), str(out["language"])


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
        from whisperx_service.pipeline.align_whisper import align_with_whisper

        return align_with_whisper(models.asr(), segments, audio, language, progress)
    import whisperx

    model, meta = models.aligner(language)
    out = whisperx.align(
        segments, model, meta, audio, models.device, return_char_alignments=False, progress_callback=progress
    )
    return list(out["segments"])


def diarize(
    audio: np.ndarray, options: JobOptions, models: ModelProvider, progress: Callable[[float], None]
) -> list[SpeakerTurn]:
    """Speaker turns (seconds) from the diarization pipeline, honouring the job's speaker counts."""
    df = models.diarizer()(
        audio,
        num_speakers=options.num_speakers,
        min_speakers=options.min_speakers,
        max_speakers=options.max_speakers,
        progress_callback=progress,
    )
    return [
        SpeakerTurn(start=float(r.start), end=float(r.end), speaker=str(r.speaker)) for r in df.itertuples(index=False)
    ]


def _unaligned_words(seg: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"word": w} for w in str(seg.get("text", "")).split()]


def run_pipeline(
    source: Path,
    workdir: Path,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: ProgressFn,
    *,
    on_decoded: Callable[[float], None] | None = None,
) -> Transcript:
    """Transcribe one file end to end.

    Args:
        source: the uploaded file (any format ffmpeg reads).
        workdir: scratch directory for the decoded PCM (created; the PCM is removed at the end).
        options: the job's options.
        models: lazily loading model provider.
        settings: service settings.
        progress: called with (stage, 0-100) as each stage advances; 0 when a stage starts.
        on_decoded: called once with the audio duration in seconds after decoding.
    Returns:
        The transcript: segments split at speaker turns, every word kept (unaligned ones
        interpolated and flagged), speakers with talk time, models used, per-stage timings.
    Raises:
        AudioDecodeFailed, AudioTooLong, ModelLoadFailed, PipelineError.
    """
    timings: dict[str, float] = {}
    loads_before = len(models.loads)
    workdir.mkdir(parents=True, exist_ok=True)
    pcm_path = workdir / "audio.pcm"

    def stage(s: Stage) -> Callable[[float], None]:
        progress(s, 0.0)
        return lambda pct: progress(s, float(pct))

    try:
        t = time.perf_counter()
        decoded = decode_to_pcm(
            source, pcm_path, max_duration_s=settings.limits.max_duration_s, progress=stage(Stage.decode)
        )
        progress(Stage.decode, 100.0)
        timings["decode"] = time.perf_counter() - t
        if on_decoded is not None:
            on_decoded(decoded.duration_s)
        audio = read_window(open_pcm(decoded.path))

        t = time.perf_counter()
        cb = stage(Stage.transcribe)
        asr = models.asr()
        segments, language = transcribe(asr, audio, options, settings, cb)
        progress(Stage.transcribe, 100.0)
        timings["transcribe"] = time.perf_counter() - t

        if options.align and segments:
            t = time.perf_counter()
            segments = align(segments, audio, language, models, settings, stage(Stage.align))
            progress(Stage.align, 100.0)
            timings["align"] = time.perf_counter() - t

        turns: list[SpeakerTurn] = []
        if options.diarize:
            t = time.perf_counter()
            turns = diarize(audio, options, models, stage(Stage.diarize))
            progress(Stage.diarize, 100.0)
            timings["diarize"] = time.perf_counter() - t

        t = time.perf_counter()
        progress(Stage.merge, 0.0)
        out_segments, turns = merge(segments, turns, decoded.duration_s, language)
        timings["merge"] = time.perf_counter() - t
        used = models.describe(language)
        if not options.align:
            used.pop("align", None)
        if not options.diarize:
            used.pop("diarize", None)
        return Transcript(
            language=language,
            duration=round(decoded.duration_s, 3),
            segments=out_segments,
            speakers=wordops.speaker_stats(turns),
            speaker_turns=sorted(turns, key=lambda x: (x.start, x.end)),
            models=used,
            timings={k: round(v, 3) for k, v in timings.items()},
            models_loaded=models.loads[loads_before:],
        )
    finally:
        with suppress(FileNotFoundError):
            pcm_path.unlink()


def merge(
    segments: list[dict[str, Any]], turns: list[SpeakerTurn], duration_s: float, language: str
) -> tuple[list[Segment], list[SpeakerTurn]]:
    """Words with times and speakers, segments split at speaker changes.

    Args:
        segments: WhisperX segment dicts, with `words` when aligned.
        turns: diarization turns with the pipeline's labels (may be empty).
        duration_s: audio duration; every time is clamped into [0, duration_s].
        language: the transcript's language (decides how words join into text).
    Returns:
        (segments, turns relabelled SPEAKER_00.. in order of first appearance).
    """
    turns, _ = wordops.relabel_speakers(turns)
    asr_segments: list[Segment] = []
    for seg in segments:
        start = max(0.0, min(float(seg["start"]), duration_s))
        end = max(start, min(float(seg["end"]), duration_s))
        raw_words = seg.get("words") or _unaligned_words(seg)
        ws: list[Word] = wordops.interpolate_word_times(raw_words, start, end)
        if not ws:
            continue
        ws = wordops.assign_speakers(ws, turns)
        asr_segments.append(
            Segment(
                id=len(asr_segments),
                start=ws[0].start,
                end=ws[-1].end,
                text=str(seg["text"]).strip(),
                words=ws,
            )
        )
    return wordops.split_at_speaker_turns(asr_segments, word_sep=wordops.word_separator(language)), turns
