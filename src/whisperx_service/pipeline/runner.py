"""Run one job's audio through every stage: decode -> vad (the plan) -> chunks (transcribe, align, diarize) -> merge.

Knows nothing of HTTP, Celery or Redis: it takes a file, the job's options, a model provider, a
working directory and a progress callback, and returns a `Transcript`.

Long audio: the plan (`plan.py`) decodes once and cuts the file into overlapping chunks; each
chunk is read from the memory-mapped PCM, its windows transcribed, aligned and the chunk
diarized (`stages/chunk.py`), and its result checkpointed atomically (`chunks/<n>.json`). A
rerun of the same job reuses the decoded audio, the plan and every finished chunk, so a finished
chunk is never computed twice. Finally the chunks are merged between two ASR windows near each
overlap's midpoint (`post/merge.py`) and speakers are linked across chunks by their embeddings
(`post/linking.py`), so one person keeps one label for the whole file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.domain.script import Script
from whisperx_service.domain.transcript import SpeakerTurn, Transcript, Word
from whisperx_service.pipeline.audio.pcm import open_pcm
from whisperx_service.pipeline.audio.windows import Window
from whisperx_service.pipeline.models.provider import ModelProvider
from whisperx_service.pipeline.plan import JobPaths, ProgressFn, decode_once, load_or_make_plan
from whisperx_service.pipeline.post.linking import link_speakers
from whisperx_service.pipeline.post.merge import merge_chunk_turns, merge_chunk_words, seam_cuts, window_cuts
from whisperx_service.pipeline.post.partial import final_chunk_words, words_text
from whisperx_service.pipeline.post.segments import build_segments, turn_segments
from whisperx_service.pipeline.post.speakers import apply_speaker_map, relabel_speakers, speaker_stats
from whisperx_service.pipeline.stages.chunk import ChunkResult, process_chunk
from whisperx_service.storage.local import atomic_write_json


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
    on_final_text: Callable[[int, str, str], None] | None = None,
    script: Script | None = None,
) -> Transcript:
    """Transcribe one file end to end, resuming from whatever an earlier run of the job left.

    Args:
        source: the uploaded file (any format ffmpeg reads).
        paths: the job's work and checkpoint directories.
        options: the job's options.
        models: lazily loading model provider.
        settings: service settings (chunk size and overlap, limits, backends).
        progress: called with (stage, 0-100, chunk, chunks) as stages advance (decode, vad, then per
            chunk transcribe, align, diarize, then merge); 0 at each start, 100 at the end of the
            stages run once per job.
        attempt: written into new checkpoints (which attempt computed each chunk).
        on_decoded: called once with the audio duration in seconds.
        on_chunk: called after each chunk with (result, reused from its checkpoint, number of chunks).
        on_final_text: called with (k, text, language) once chunk k's text is final, i.e. right after chunk
            k+1 (`post/partial.py`): the text of the words of chunk k that the merge keeps, as a
            segment's text is made. Not called for the last chunk (its text is final at the end),
            and called again for each chunk when a rerun reuses the checkpoints.
        script: the transcript an `align` job places (`stages/script.py`).
    A re-diarization finds the earlier job's plan as its own and each chunk's earlier result
    next to its checkpoint (`JobPaths.reused`): it keeps their words and only diarizes again.
    Returns:
        The transcript: words from every chunk merged without loss or doubling at the seams,
        speakers linked across chunks, segments split at speaker turns, speaker talk times,
        models used, per-stage timings (seconds, summed over chunks).
    Raises:
        AudioDecodeFailed, AudioTooLong, ModelLoadFailed, JobFailure.
    """
    timings: dict[str, float] = {}
    loads_before = len(models.loads)
    t = time.perf_counter()
    decoded = decode_once(source, paths, settings, progress)
    timings["decode"] = time.perf_counter() - t
    if on_decoded is not None:
        on_decoded(decoded.duration_s)
    pcm = open_pcm(decoded.path)
    paths.chunks.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    plan = load_or_make_plan(pcm, paths, options, models, settings, progress)
    timings["vad"] = time.perf_counter() - t  # the plan: chunk cuts, language, VAD over the file (ASR windows)
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

            earlier = paths.reused(chunk.index)
            reuse = ChunkResult.from_json(json.loads(earlier.read_text())) if earlier.exists() else None
            result = process_chunk(
                chunk, pcm, plan.windows, language, options, models, settings, chunk_progress,
                script=script, reuse=reuse, first=chunk.index == 0, last=chunk.index == len(chunks) - 1,
            )  # fmt: skip
            result.attempt = attempt
            atomic_write_json(ckpt, result.to_json())
            reused = False
        for k, v in result.timings.items():
            timings[k] = timings.get(k, 0.0) + v
        results.append(result)
        if on_chunk is not None:
            on_chunk(result, reused, len(chunks))
        if on_final_text is not None and len(results) >= 2:
            final = len(results) - 2
            kept = final_chunk_words([r.words for r in results], chunks, plan.windows, final)
            on_final_text(final, words_text(kept), language)

    t = time.perf_counter()
    progress(Stage.merge, 0.0, len(chunks) - 1, len(chunks))
    words, turns = merge_results(results, options, settings.chunk.link_threshold, plan.windows)
    segments = build_segments(words) if options.task != "diarize" else turn_segments(turns)
    timings["merge"] = time.perf_counter() - t
    used = models.describe(language)
    if options.task == "diarize":
        used.pop("asr", None)
    if options.task == "diarize" or not (options.align or options.task == "align"):
        used.pop("align", None)
    if not options.diarize:
        used.pop("diarize", None)
    return Transcript(
        language=language,
        language_probability=probability,
        duration=round(decoded.duration_s, 3),
        segments=segments,
        speakers=speaker_stats(turns),
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
    parts_w = [(r.chunk, apply_speaker_map(r.words, m)) for r, m in zip(results, mappings, strict=True)]
    parts_t = [
        (r.chunk, [t.model_copy(update={"speaker": m.get(t.speaker, t.speaker)}) for t in r.turns])
        for r, m in zip(results, mappings, strict=True)
    ]
    cuts = seam_cuts(parts_w)  # words and turns are cut at the same instants
    if windows:
        cuts = window_cuts([r.chunk for r in results], [(w["start"], w["end"]) for w in windows], cuts)
    words = merge_chunk_words(parts_w, cuts=cuts)
    turns = sorted(merge_chunk_turns(parts_t, cuts=cuts), key=lambda x: (x.start, x.end))
    turns, relabel = relabel_speakers(turns)
    return apply_speaker_map(words, relabel), turns


def _first_seen(turns: list[SpeakerTurn]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in turns:
        out[t.speaker] = min(out.get(t.speaker, t.start), t.start)
    return out
