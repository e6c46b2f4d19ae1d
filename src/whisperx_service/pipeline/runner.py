"""Run one job's audio through every stage: decode -> chunks (transcribe, align, diarize) -> merge.

Knows nothing of HTTP, Celery or Redis: it takes a file, the job's options, a model provider, a
working directory and a progress callback, and returns a `Transcript`.

Long audio (DESIGN.md section 5): ffmpeg decodes once to 16 kHz PCM on disk (`work/audio.pcm`);
the plan cuts it into overlapping chunks of at most `CHUNK_BYTES` (in silences where the VAD
finds one near a cut) and fixes the ASR windows of the whole file (`asr_windows`: the VAD runs
once, over fixed blocks); each chunk is read from the memory-mapped file, its windows are
transcribed, aligned and the chunk diarized, and its result is checkpointed atomically
(`chunks/<n>.json`). A rerun of the same job (after a crash) reuses the decoded audio, the plan
and every finished chunk, so a finished chunk is never computed twice. Finally the chunks are
merged between two ASR windows near each overlap's midpoint (`merge`) and speakers are linked
across chunks by their embeddings, so one person keeps one label for the whole file.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from whisperx_service.config import AlignBackend, Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.domain.transcript import SpeakerTurn, Transcript, Word
from whisperx_service.errors import PipelineError
from whisperx_service.pipeline import words as wordops
from whisperx_service.pipeline.asr_windows import (
    Window,
    chunk_windows,
    grid_windows,
    precomputed_windows,
    speech_regions,
)
from whisperx_service.pipeline.audio import DecodedAudio, decode_to_pcm, open_pcm, read_window
from whisperx_service.pipeline.chunks import Chunk, plan_chunks, silence_finder
from whisperx_service.pipeline.language import speech_blocks, vote, whisper_detector
from whisperx_service.pipeline.merge import merge_chunk_turns, merge_chunk_words, seam_cuts, window_cuts
from whisperx_service.pipeline.speakers import link_speakers
from whisperx_service.storage.local import atomic_write_json

#: progress(stage, stage_percent 0-100, chunk index, number of chunks)
ProgressFn = Callable[[Stage, float, int, int], None]


class ModelProvider(Protocol):
    """What the runner needs from the model cache (see `worker.models.ModelCache`)."""

    loads: list[str]

    @property
    def device(self) -> str: ...
    def asr(self) -> Any: ...
    def aligner(self, language: str) -> tuple[Any, Any]: ...
    def diarizer(self) -> Any: ...
    def describe(self, language: str | None) -> dict[str, str]: ...


@dataclass
class ChunkResult:
    """One chunk's checkpoint: everything the merge needs, times absolute (seconds).

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
        start of `audio`.
    """
    own = nullcontext() if windows is None else precomputed_windows(asr, windows)
    with _job_asr_options(asr, options), own:
        out = asr.transcribe(
            audio,
            batch_size=settings.asr.batch_size,
            language=language,
            chunk_size=settings.asr.window_s,
            progress_callback=progress,
        )
    return list(out["segments"])


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


def _words_of(segments: list[dict[str, Any]], offset_s: float, end_s: float) -> list[Word]:
    """Every word of the segments with absolute times (unaligned ones interpolated, flagged)."""
    out: list[Word] = []
    for seg in segments:
        start = max(0.0, min(float(seg["start"]), end_s - offset_s))
        end = max(start, min(float(seg["end"]), end_s - offset_s))
        raw = seg.get("words") or [{"word": w} for w in str(seg.get("text", "")).split()]
        shifted = [
            {**w, "start": w["start"] + offset_s if w.get("start") is not None else None,
             "end": w["end"] + offset_s if w.get("end") is not None else None}
            for w in raw
        ]  # fmt: skip
        out += wordops.interpolate_word_times(shifted, start + offset_s, end + offset_s)
    return out


def process_chunk(
    chunk: Chunk,
    pcm: np.ndarray,
    windows: list[Window],
    language: str,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: Callable[[Stage, float], None],
) -> ChunkResult:
    """Transcribe, align and diarize one chunk (read from the memory-mapped PCM).

    Args:
        windows: the job's ASR windows (absolute seconds, `Plan.windows`); the chunk decodes
            those it holds, clipped to its edges.

    Returns:
        The chunk's words (absolute seconds, speakers by the chunk's own labels), turns and
        per-speaker embeddings.
    """
    timings: dict[str, float] = {}
    # The models read the chunk from the whole second at or before its start (a whole number of
    # samples, so window and word times convert between chunk and file time exactly).
    origin = float(math.floor(chunk.start_s))
    audio = read_window(pcm, origin, chunk.end_s)
    t = time.perf_counter()
    progress(Stage.transcribe, 0.0)
    own = chunk_windows(windows, chunk.start_s, chunk.end_s, origin)
    segments = transcribe(
        models.asr(), audio, language, options, settings, lambda p: progress(Stage.transcribe, p), own
    )
    timings["transcribe"] = time.perf_counter() - t
    if options.align and segments:
        t = time.perf_counter()
        progress(Stage.align, 0.0)
        segments = align(segments, audio, language, models, settings, lambda p: progress(Stage.align, p))
        timings["align"] = time.perf_counter() - t
    words = _words_of(segments, origin, chunk.end_s)
    turns: list[SpeakerTurn] = []
    embeddings: dict[str, list[float] | None] = {}
    if options.diarize:
        t = time.perf_counter()
        progress(Stage.diarize, 0.0)
        local, embeddings = diarize(audio, options, models, lambda p: progress(Stage.diarize, p))
        turns = [SpeakerTurn(start=x.start + origin, end=x.end + origin, speaker=x.speaker) for x in local]
        words = wordops.assign_speakers(words, turns)
        timings["diarize"] = time.perf_counter() - t
    return ChunkResult(chunk, words, turns, embeddings, {k: round(v, 3) for k, v in timings.items()})


def _decode(source: Path, paths: JobPaths, settings: Settings, progress: ProgressFn) -> DecodedAudio:
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


def _plan(
    pcm: np.ndarray,
    paths: JobPaths,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: ProgressFn,
) -> Plan:
    """The job's plan: read back from `plan.json`, or made and saved once (atomically).

    The VAD pass over the file reports as the start of the first chunk's transcription.
    """
    if paths.plan.exists():
        d = json.loads(paths.plan.read_text())
        if "windows" in d:
            return Plan.from_json(d)
        # Written by a version that ran the VAD per chunk: keep its chunks and language (its
        # checkpoints refer to them) and add the windows.
        chunks = [Chunk.from_dict(c) for c in d["chunks"]]
        language, probability = d["language"], d.get("language_probability")
    else:
        chunks = plan_chunks(
            len(pcm),
            chunk_bytes=settings.chunk.bytes,
            overlap_s=settings.chunk.overlap_s,
            find_silence=silence_finder(pcm),
            grid_s=settings.asr.window_s,
        )
        language, probability = choose_language(pcm, options, models, settings)
    windows = asr_windows_of(pcm, models.asr(), settings, lambda p: progress(Stage.transcribe, 0.0, 0, len(chunks)))
    plan = Plan(chunks, windows, language, probability)
    atomic_write_json(paths.plan, plan.to_json())
    return plan


def choose_language(
    pcm: np.ndarray, options: JobOptions, models: ModelProvider, settings: Settings
) -> tuple[str, float | None]:
    """The job's language: asked for, the model's only one, or detected from speech by vote.

    Raises:
        PipelineError: `language_not_supported` (English-only model, other language asked for)
            or `no_speech` (nothing to detect a language from).
    """
    asr = models.asr()
    asked = options.language or settings.asr.language
    if _english_only(asr):
        if asked not in (None, "en"):
            raise PipelineError(
                f"the ASR model is English-only; language {asked!r} needs a multilingual model",
                code="language_not_supported",
            )
        return "en", None
    if asked:
        return asked, None
    language, probability = vote(speech_blocks(pcm), whisper_detector(asr.model))
    if language is None:
        # No block of 5 s of speech anywhere: fall back to Whisper's own guess on the start.
        language = str(asr.detect_language(read_window(pcm, 0.0, 30.0)))
    return language, probability


def run_pipeline(
    source: Path,
    paths: JobPaths,
    options: JobOptions,
    models: ModelProvider,
    settings: Settings,
    progress: ProgressFn,
    *,
    attempt: int = 0,
    on_decoded: Callable[[float], None] | None = None,
    on_chunk: Callable[[ChunkResult, bool, int], None] | None = None,
) -> Transcript:
    """Transcribe one file end to end, resuming from whatever an earlier run of the job left.

    Args:
        source: the uploaded file (any format ffmpeg reads).
        paths: the job's work and checkpoint directories.
        options: the job's options.
        models: lazily loading model provider.
        settings: service settings (chunk size and overlap, limits, backends).
        progress: called with (stage, 0-100, chunk, chunks) as stages advance; 0 at each start.
        attempt: written into new checkpoints (which attempt computed each chunk).
        on_decoded: called once with the audio duration in seconds.
        on_chunk: called after each chunk with (result, reused from its checkpoint, number of chunks).
    Returns:
        The transcript: words from every chunk merged without loss or doubling at the seams,
        speakers linked across chunks, segments split at speaker turns, speaker talk times,
        models used, per-stage timings (seconds, summed over chunks).
    Raises:
        AudioDecodeFailed, AudioTooLong, ModelLoadFailed, PipelineError.
    """
    timings: dict[str, float] = {}
    loads_before = len(models.loads)
    t = time.perf_counter()
    decoded = _decode(source, paths, settings, progress)
    timings["decode"] = time.perf_counter() - t
    if on_decoded is not None:
        on_decoded(decoded.duration_s)
    pcm = open_pcm(decoded.path)
    paths.chunks.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    plan = _plan(pcm, paths, options, models, settings, progress)
    timings["plan"] = time.perf_counter() - t  # chunk plan, language, VAD over the file (ASR windows)
    chunks, language, probability = plan.chunks, plan.language, plan.language_probability

    results: list[ChunkResult] = []
    for chunk in chunks:
        ckpt = paths.checkpoint(chunk.index)
        if ckpt.exists():
            result = ChunkResult.from_json(json.loads(ckpt.read_text()))
            reused = True
        else:

            def chunk_progress(stage: Stage, pct: float, _i: int = chunk.index) -> None:
                progress(stage, pct, _i, len(chunks))

            result = process_chunk(chunk, pcm, plan.windows, language, options, models, settings, chunk_progress)
            result.attempt = attempt
            atomic_write_json(ckpt, result.to_json())
            reused = False
        for k, v in result.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        results.append(result)
        if on_chunk is not None:
            on_chunk(result, reused, len(chunks))

    t = time.perf_counter()
    progress(Stage.merge, 0.0, len(chunks) - 1, len(chunks))
    words, turns = merge_results(results, options, settings.chunk.link_threshold, plan.windows)
    segments = wordops.build_segments(words, word_sep=wordops.word_separator(language))
    timings["merge"] = time.perf_counter() - t
    used = models.describe(language)
    if not options.align:
        used.pop("align", None)
    if not options.diarize:
        used.pop("diarize", None)
    return Transcript(
        language=language,
        language_probability=probability,
        duration=round(decoded.duration_s, 3),
        segments=segments,
        speakers=wordops.speaker_stats(turns),
        speaker_turns=turns,
        models=used,
        timings={k: round(v, 3) for k, v in timings.items()},
        models_loaded=models.loads[loads_before:],
        chunks=len(chunks),
    )


def merge_results(
    results: list[ChunkResult], options: JobOptions, link_threshold: float, windows: list[Window] | None = None
) -> tuple[list[Word], list[SpeakerTurn]]:
    """Merge chunk results: one speaker label per person across chunks, no word lost or doubled.

    `windows` are the job's ASR windows (absolute seconds): seams are cut between two windows
    the chunks hold whole (`merge.window_cuts`); without them, or where there is no such gap,
    at a pause near the overlap's midpoint (`merge.seam_cuts`).

    Returns:
        (words in time order with global speakers, turns with global speakers), labels
        `SPEAKER_00..` numbered by first appearance.
    """
    mappings = link_speakers(
        [r.embeddings for r in results],
        num_speakers=options.num_speakers,
        min_speakers=options.min_speakers,
        max_speakers=options.max_speakers,
        threshold=link_threshold,
        first_seen=[_first_seen(r.turns) for r in results],
    )
    parts_w = [(r.chunk, wordops.apply_speaker_map(r.words, m)) for r, m in zip(results, mappings, strict=True)]
    parts_t = [
        (r.chunk, [t.model_copy(update={"speaker": m.get(t.speaker, t.speaker)}) for t in r.turns])
        for r, m in zip(results, mappings, strict=True)
    ]
    cuts = seam_cuts(parts_w)  # words and turns are cut at the same instants
    if windows:
        cuts = window_cuts([r.chunk for r in results], [(w["start"], w["end"]) for w in windows], cuts)
    words = merge_chunk_words(parts_w, cuts=cuts)
    turns = sorted(merge_chunk_turns(parts_t, cuts=cuts), key=lambda x: (x.start, x.end))
    turns, relabel = wordops.relabel_speakers(turns)
    return wordops.apply_speaker_map(words, relabel), turns


def _first_seen(turns: list[SpeakerTurn]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in turns:
        out[t.speaker] = min(out.get(t.speaker, t.start), t.start)
    return out
