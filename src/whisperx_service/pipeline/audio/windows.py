"""ASR windows for the whole file, made once, so every chunk decodes exactly what one pass would.

WhisperX's batched pipeline runs the VAD over its input, groups the speech regions into windows
of at most `chunk_size` seconds (`merge_chunks`) and decodes each window as a whole. Which audio a
window holds decides the words: with tiny.en, a window whose edges move by 10 ms can come back with
different words. Run per chunk, both steps depend on where the chunk starts (the VAD's sliding
windows and its hysteresis start at the input's first sample; the greedy grouping starts at the
first region), so a chunked pass and a single pass over the same file decoded 8-11 % of the
words differently here, though neither was worse against the script.

So the job does both steps once, for the whole file, and keeps the result in its plan:

1. `speech_regions` runs the configured VAD (the ASR pipeline's own: pyannote or Silero) over
   fixed blocks of absolute time (`VAD_BLOCK_S`, each read with `VAD_CONTEXT_S` of context on
   both sides, one block in memory at a time) and stitches the regions. The blocks do not depend
   on the chunk plan, so a file cut into 60 s chunks and the same file as one chunk get the same
   regions to the sample.
2. `grid_windows` groups the regions into windows that never span more than `window_s` and that
   start anew at every multiple of `window_s` (a grid in absolute time). The chunk plan centres
   every overlap on a grid line (`plan_chunks(grid_s=)`), so there is a window boundary inside
   every overlap, where the merge cuts (`merge.window_cuts`).
3. `chunk_windows` gives each chunk the windows it holds (clipped at its edges), in the chunk's own
   time, snapped so WhisperX slices the very samples a single pass slices; `precomputed_windows`
   makes the loaded WhisperX pipeline decode those windows instead of running its VAD again.

A window that a chunk holds whole is therefore decoded from identical audio in the chunked and in
the single pass; the merge takes each window from a chunk that holds it whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from whisperx.vads.vad import Vad

from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.pcm import read_window

#: Absolute block length (s) the VAD runs on, whatever the file's length. 5 min is 19 MB of float32;
#: the VAD pass's peak memory growth is `rss_growth_asr_windows_mib` in bench/results.json (`make bench`).
VAD_BLOCK_S = 300.0
#: Seconds of audio read before and after each block, so regions near a block's edges see the same
#: context as anywhere else (pyannote's segmentation window is 10 s; Silero's state settles in < 1 s).
VAD_CONTEXT_S = 30.0

#: A speech region `(start_s, end_s)`, absolute seconds.
Region = tuple[float, float]
#: WhisperX's merged-window shape: `{"start": s, "end": s, "segments": [(start_s, end_s), ...]}`.
Window = dict[str, Any]


def speech_regions(
    pcm: np.ndarray,
    vad: Any,
    *,
    chunk_size: float,
    onset: float,
    offset: float | None,
    block_s: float = VAD_BLOCK_S,
    context_s: float = VAD_CONTEXT_S,
    progress: Callable[[float], None] | None = None,
) -> list[Region]:
    """Speech regions of the whole file, by the ASR pipeline's VAD, block by block.

    Args:
        pcm: int16 samples at 16 kHz, shape (n,) (the memory-mapped decoded audio).
        vad: a WhisperX `Vad` (the pipeline's `vad_model`: pyannote or `OfflineSileroVad`).
        chunk_size: longest region (s); WhisperX's `merge_chunks` splits longer ones.
        onset, offset: the pipeline's VAD thresholds (`_vad_params`).
        block_s: block length (s); blocks are `[k * block_s, (k + 1) * block_s)` of absolute time.
        context_s: context (s) read on each side of a block.
        progress: called with 0-100 after each block.

    Returns:
        Regions in time order, absolute seconds, not overlapping. A region belongs to the block
        its start falls in; one that starts inside the previous block's last region is trimmed
        to start where that one ends (dropped if nothing is left).

    Raises:
        ValueError: `block_s` is not positive or `context_s` is negative.
    """
    if block_s <= 0 or context_s < 0:
        raise ValueError(f"block_s must be > 0 and context_s >= 0, got {block_s}, {context_s}")
    total_s = len(pcm) / SAMPLE_RATE
    blocks = max(1, math.ceil(total_s / block_s))
    out: list[Region] = []
    for k in range(blocks):
        core_lo, core_hi = k * block_s, (total_s if k == blocks - 1 else (k + 1) * block_s)
        lo = max(0.0, core_lo - context_s)
        audio = read_window(pcm, lo, min(total_s, core_hi + context_s))
        raw = vad({"waveform": vad.preprocess_audio(audio), "sample_rate": SAMPLE_RATE}) if len(audio) else []
        empty = isinstance(raw, list) and not raw  # Silero found nothing (its merge_chunks fails on [])
        merged = [] if empty else vad.merge_chunks(raw, chunk_size, onset=onset, offset=offset)
        for w in merged:
            for s, e in w["segments"]:
                start, end = lo + float(s), lo + float(e)
                if not core_lo <= start < core_hi:
                    continue
                if out and start < out[-1][1]:
                    start = out[-1][1]
                if end > start:
                    out.append((start, end))
        if progress is not None:
            progress(100.0 * (k + 1) / blocks)
    return out


def grid_windows(regions: Sequence[Region], window_s: float) -> list[Window]:
    """Group speech regions into ASR windows on a grid of `window_s` seconds of absolute time.

    Args:
        regions: absolute `(start_s, end_s)` in time order (`speech_regions`).
        window_s: longest window (s); also the grid step.

    Returns:
        Windows in WhisperX's shape, absolute seconds, in time order: each holds consecutive
        regions that start in one grid cell `[k * window_s, (k + 1) * window_s)` and spans at most
        `window_s` (a single longer region is kept whole, as WhisperX does).

    Raises:
        ValueError: `window_s` is not positive.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    out: list[Window] = []
    cell = -1
    for start, end in regions:
        region_cell = math.floor(start / window_s)
        if out and region_cell == cell and end - out[-1]["start"] <= window_s:
            out[-1]["end"] = end
            out[-1]["segments"].append((start, end))
        else:
            out.append({"start": start, "end": end, "segments": [(start, end)]})
            cell = region_cell
    return out


def _local(t: float, origin: int) -> float:
    """Absolute seconds -> seconds from sample `origin`, such that WhisperX's `int(t * 16000)` is
    exactly the sample a single pass slices there (`int(t * 16000) - origin`): half a sample is
    added, so the float product never falls just below the integer."""
    return (int(t * SAMPLE_RATE) - origin + 0.5) / SAMPLE_RATE


def chunk_windows(windows: Sequence[Window], start_s: float, end_s: float, origin_s: float) -> list[Window]:
    """The windows a chunk `[start_s, end_s)` holds, clipped to it, in the chunk's own time.

    Args:
        windows: the file's windows (`grid_windows`), absolute seconds.
        start_s, end_s: the chunk's span (s).
        origin_s: absolute time (s) of the chunk audio's first sample (a whole number of samples).

    Returns:
        Windows in seconds from `origin_s`; a window cut by the chunk's edge keeps only its part
        inside the chunk (its words are not the ones the merge keeps, see `merge.window_cuts`).
    """
    origin = round(origin_s * SAMPLE_RATE)
    out: list[Window] = []
    for w in windows:
        segs = [(max(s, start_s), min(e, end_s)) for s, e in w["segments"] if e > start_s and s < end_s]
        segs = [(s, e) for s, e in segs if e > s]
        if segs:
            local = [(_local(s, origin), _local(e, origin)) for s, e in segs]
            out.append({"start": local[0][0], "end": local[-1][1], "segments": local})
    return out


class _Precomputed(Vad):  # type: ignore[misc]  # whisperx is untyped
    """A WhisperX `Vad` that finds nothing itself and hands over windows made beforehand."""

    def __init__(self, windows: list[Window]) -> None:
        super().__init__(0.5)
        self.windows = windows

    @staticmethod
    def preprocess_audio(audio: Any) -> None:
        """Nothing to prepare: no model runs."""
        return None

    def __call__(self, audio: Any, **kwargs: Any) -> None:
        """No VAD pass: the windows are known."""
        return None

    def merge_chunks(self, segments: Any, chunk_size: float, *args: Any, **kwargs: Any) -> list[Window]:
        """The precomputed windows (WhisperX calls this with its VAD's output, ignored here)."""
        return self.windows


@contextmanager
def precomputed_windows(asr: Any, windows: list[Window]) -> Iterator[None]:
    """For the block, make `asr` (a WhisperX FasterWhisperPipeline) decode `windows` (in the
    input's own seconds, `chunk_windows`) instead of running its VAD and grouping its regions.

    WhisperX's `transcribe` calls `self.vad_model.preprocess_audio`, `self.vad_model(...)` and
    `self.vad_model.merge_chunks(...)`; the pipeline's VAD is swapped for a stand-in for the
    block's duration and put back afterwards. Not thread-safe: one job uses a worker's pipeline
    at a time.
    """
    saved = asr.vad_model
    asr.vad_model = _Precomputed(windows)
    try:
        yield
    finally:
        asr.vad_model = saved
