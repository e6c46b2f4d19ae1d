"""ASR windows on a grid fixed in absolute time, so a chunk decodes the same windows as one pass.

WhisperX's batched pipeline runs the VAD over its input, then `merge_chunks` groups the speech
regions greedily into windows of at most `chunk_size` seconds, starting from the first region of
the input. Whisper decodes each window as a whole, so which regions share a window decides the
words. With greedy grouping from the input's start, a chunk that starts at 1 h 07 min groups its
regions differently from a single pass over the whole file, and a small model (tiny.en) then
decodes different words (8-11 % WER between the two passes was measured here).

`grid_windows` regroups the regions: a new window starts at every multiple of `window_s` in
absolute time (the chunk's start offset plus the region's start) as well as when the window would
grow past `window_s`. Windows away from the chunk's edges therefore hold the same regions in the
chunked and in the single pass. `windows_on_grid` installs it on a loaded WhisperX pipeline for one
call, without changing WhisperX's code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: WhisperX's merged-window shape: {"start": s, "end": s, "segments": [(start_s, end_s), ...]}.
Window = dict[str, Any]


def grid_windows(windows: list[Window], origin_s: float, window_s: float) -> list[Window]:
    """Regroup the speech regions of WhisperX's merged windows on an absolute time grid.

    Args:
        windows: WhisperX `merge_chunks` output; times in seconds from the start of the input.
        origin_s: absolute time (s) of the input's first sample (the chunk's start in the file).
        window_s: longest window (s); also the grid step. Regions are assumed no longer than it
            (WhisperX's VAD binarisation splits longer ones at `chunk_size`).

    Returns:
        Windows of the same shape, in time order, each holding consecutive regions that start
        in one grid cell `[k * window_s, (k + 1) * window_s)` of absolute time and span at most
        `window_s` (a single longer region is kept whole, as WhisperX does).

    Raises:
        ValueError: `window_s` is not positive.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    regions = [(float(s), float(e)) for w in windows for s, e in w["segments"]]
    out: list[Window] = []
    cell = -1
    for start, end in regions:
        region_cell = math.floor((origin_s + start) / window_s)
        if out and region_cell == cell and end - out[-1]["start"] <= window_s:
            out[-1]["end"] = end
            out[-1]["segments"].append((start, end))
        else:
            out.append({"start": start, "end": end, "segments": [(start, end)]})
            cell = region_cell
    return out


@contextmanager
def windows_on_grid(asr: Any, origin_s: float, window_s: float) -> Iterator[None]:
    """For the duration of the block, make `asr` (a WhisperX FasterWhisperPipeline) group its VAD
    regions with `grid_windows` at `origin_s`.

    WhisperX calls `self.vad_model.merge_chunks(segments, chunk_size, onset=..., offset=...)`; an
    instance attribute shadows the class's static method for this pipeline only, and is removed
    afterwards. Not thread-safe: one job uses a worker's pipeline at a time.
    """
    vad = asr.vad_model
    inner: Callable[..., list[Window]] = type(vad).merge_chunks

    def merge(segments: Any, chunk_size: float, *args: Any, **kwargs: Any) -> list[Window]:
        merged = inner(segments, chunk_size, *args, **kwargs)
        return grid_windows(merged, origin_s, window_s) if merged else merged

    vad.merge_chunks = merge
    try:
        yield
    finally:
        del vad.merge_chunks
