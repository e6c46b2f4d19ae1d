"""Plan the windows a long recording is processed in (docs/ARCHITECTURE.md).

The decoded audio (16 kHz mono int16 PCM on disk, `pipeline.audio`) is cut into chunks of at most
`CHUNK_BYTES` of decoded audio; consecutive chunks overlap by about `CHUNK_OVERLAP_S` seconds so
that `pipeline.merge` can stitch their words at the overlap's midpoint. Positions here are
**sample offsets** into the decoded PCM (ints, end exclusive); the `*_s` properties give seconds.

`plan_chunks` is pure arithmetic. Given a `find_silence(lo, hi)` callback (for example
`silence_finder(open_pcm(path))`, which runs the Silero VAD on that window only), every cut is moved
into a pause, so no chunk starts or ends in the middle of a word.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from whisperx_service.config import BYTES_PER_SAMPLE, SAMPLE_RATE

#: Seconds searched for a pause just before each nominal cut (shrunk for small chunks, see
#: `plan_chunks`). Ten seconds of conversation almost always hold a pause of 0.3 s or more.
SEARCH_S = 10.0
#: Shortest pause (seconds) `silence_finder` accepts as a place to cut.
MIN_SILENCE_S = 0.3
#: Silero settings for finding pauses: the speech probability threshold (Silero's and WhisperX's
#: default), the silence (ms) that ends a speech region and the padding (ms) around each region.
#: 100 ms / 30 ms are upstream silero-vad's defaults, the values `pipeline.vad` uses too; short
#: settings keep word gaps visible, while `min_silence_s` decides which gaps are long enough.
VAD_THRESHOLD = 0.5
VAD_MIN_SILENCE_MS = 100
VAD_SPEECH_PAD_MS = 30
#: Scale from int16 PCM to float32 in [-1, 1) (as `pipeline.audio.INT16_SCALE`).
_INT16_SCALE = 32768.0

FindSilence = Callable[[int, int], int | None]
"""`find_silence(lo, hi)`: a sample index in `[lo, hi]` inside a pause, or None when there is none."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One window of the decoded audio: samples `[start, end)` at `SAMPLE_RATE` Hz.

    Attributes:
        index: position of the chunk in the plan, 0-based.
        start: first sample (offset into the decoded PCM).
        end: one past the last sample (exclusive), `end >= start`.

    Raises:
        ValueError: a negative index or start, or `end < start`.
    """

    index: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.index < 0 or self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid chunk {self.index}: samples [{self.start}, {self.end})")

    @property
    def start_s(self) -> float:
        """Start in seconds from the audio's start."""
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        """End (exclusive) in seconds from the audio's start."""
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return (self.end - self.start) / SAMPLE_RATE

    @property
    def num_samples(self) -> int:
        """Length in samples."""
        return self.end - self.start

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly form: `{"index", "start", "end"}` (sample offsets)."""
        return {"index": self.index, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chunk:
        """Inverse of `to_dict`.

        Raises:
            ValueError: a key is missing, a value is not an integer, or the bounds are invalid.
        """
        try:
            values = [data[k] for k in ("index", "start", "end")]
        except KeyError as exc:
            raise ValueError(f"chunk dict lacks {exc.args[0]!r}: {dict(data)!r}") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(f"chunk fields must be integers: {dict(data)!r}")
        return cls(*values)


def plan_chunks(
    total_samples: int,
    *,
    chunk_bytes: int,
    overlap_s: float,
    find_silence: FindSilence | None = None,
    search_s: float = SEARCH_S,
    grid_s: float | None = None,
) -> list[Chunk]:
    """Cut `total_samples` samples of decoded audio into overlapping chunks.

    With `grid_s` (the ASR window length, `ASR_WINDOW_S`), every overlap is centred on a multiple
    of `grid_s` seconds: the seam where `pipeline.merge` switches chunks then falls on a line of
    the grid `pipeline.asr_windows` groups speech into, so the words each chunk supplies come
    from the same ASR windows a single pass over the file decodes (see `_grid_plan`). Without
    it, or when a chunk cannot span one grid step plus the overlap, the rules below apply.

    Rules:

    * Each chunk holds at most `chunk_bytes // BYTES_PER_SAMPLE` samples (C), so at most
      `chunk_bytes` of decoded audio. Audio of at most C samples is one chunk; no audio
      (`total_samples == 0`) gives no chunk.
    * Consecutive chunks overlap by `round(overlap_s * SAMPLE_RATE)` samples (O); with
      `find_silence`, by O plus up to the search window (S), since each start moves earlier.
    * Chunks are balanced: with R samples still to cover from the current start, the chunk count
      still needed is n = ceil((R - O) / (C - O)) and the chunk's nominal length is
      ceil((R + (n - 1) * O) / n) <= C. So there is never a sliver at the end: every chunk is at
      least about (C + O) / 2 - S samples long, except a file shorter than that (one chunk).
      Without `find_silence`, a sample lies in at most two chunks when C >= 3 * O (the defaults,
      500 MB = 15,625 s and 30 s, are far from that); shorter chunks may overlap a third chunk.
    * With `find_silence`, a chunk's end is moved to `find_silence(end - S, end)` and the next
      start to `find_silence(next - S, next)` where `next = end - O` (the window lies *before*
      the nominal cut, so a chunk never grows past C); where it returns None the nominal
      position is kept. S is `search_s` in samples, reduced to at most (C - 2 * O - 1) // 4 so
      that the two overlap midpoints of a chunk can never cross (see Raises).

    Args:
        total_samples: length of the decoded audio in samples.
        chunk_bytes: largest chunk, in bytes of decoded 16-bit PCM (`CHUNK_BYTES`).
        overlap_s: overlap between consecutive chunks, in seconds (`CHUNK_OVERLAP_S`).
        find_silence: optional `(lo, hi) -> sample index in [lo, hi] or None` (sample offsets),
            e.g. `silence_finder(pcm)`.
        search_s: length of the pause search window, in seconds, before each nominal cut.

    Returns:
        Chunks with indices 0..n-1, the first starting at 0 and the last ending at
        `total_samples`, starts and ends strictly increasing, each overlapping the next.

    Raises:
        ValueError: a negative size or overlap, a chunk of at most twice the overlap (the
            overlap midpoints of a chunk's two seams, where `pipeline.merge` cuts, must not
            cross), or `find_silence` returned a position outside `[lo, hi]`.
    """
    if total_samples < 0:
        raise ValueError(f"total_samples must be >= 0, got {total_samples}")
    if not (math.isfinite(overlap_s) and overlap_s >= 0):
        raise ValueError(f"overlap_s must be a finite number >= 0, got {overlap_s}")
    if not (math.isfinite(search_s) and search_s >= 0):
        raise ValueError(f"search_s must be a finite number >= 0, got {search_s}")
    c = chunk_bytes // BYTES_PER_SAMPLE
    o = round(overlap_s * SAMPLE_RATE)
    if c <= 2 * o:
        raise ValueError(
            f"a chunk of {chunk_bytes} bytes ({c / SAMPLE_RATE:g} s of audio) must be longer than twice the "
            f"overlap of {overlap_s:g} s: increase CHUNK_BYTES or decrease CHUNK_OVERLAP_S"
        )
    if total_samples == 0:
        return []
    if total_samples <= c:
        return [Chunk(0, 0, total_samples)]
    if grid_s is not None:
        grid = _grid_plan(total_samples, c, o, round(grid_s * SAMPLE_RATE), find_silence, round(search_s * SAMPLE_RATE))
        if grid is not None:
            return grid
    s = min(round(search_s * SAMPLE_RATE), max(0, (c - 2 * o - 1) // 4)) if find_silence else 0

    def move(nominal: int) -> int:
        if find_silence is None or s == 0:
            return nominal
        lo = nominal - s
        found = find_silence(lo, nominal)
        if found is None:
            return nominal
        if not lo <= found <= nominal:
            raise ValueError(f"find_silence({lo}, {nominal}) returned {found}, outside the window")
        return int(found)

    chunks: list[Chunk] = []
    start = 0
    while True:
        remaining = total_samples - start
        if remaining <= c:
            chunks.append(Chunk(len(chunks), start, total_samples))
            return chunks
        n = -(-(remaining - o) // (c - o))  # ceil; n >= 2 because remaining > c
        length = -(-(remaining + (n - 1) * o) // n)  # ceil; <= c by the choice of n
        end = move(start + length)
        chunks.append(Chunk(len(chunks), start, end))
        start = move(end - o)


def _grid_plan(total: int, c: int, o: int, g: int, find_silence: FindSilence | None, search: int) -> list[Chunk] | None:
    """Chunks whose overlaps are centred on multiples of `g` samples (seams on the ASR grid).

    The fewest chunks n whose seams, the multiples of `g` nearest to `k * total / n`, give every
    chunk `[seam_k - o/2, seam_k+1 + o/2)` (clamped to the audio) at most `c` samples. Each edge
    is then moved outwards into a pause (`find_silence` over at most `search` samples, and over
    no more than the chunk's spare length, split between its two edges), so chunks still start
    and end in silence where there is one and never exceed `c`.

    Returns:
        The plan, or None when no such plan exists (`c - o < g`, or seams would coincide).

    Raises:
        ValueError: `find_silence` returned a position outside the window it was given.
    """
    half = o // 2
    if g <= 0 or c - 2 * half < g:
        return None
    first = max(2, -(-(total - o) // (c - o)))
    for n in range(first, first + total // g + 1):
        seams = [round(k * total / n / g) * g for k in range(1, n)]
        bounds = [0, *seams, total]
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            return None
        spans = [(max(0, a - half), min(total, b + half)) for a, b in itertools.pairwise(bounds)]
        if all(e - s <= c for s, e in spans):
            break
    else:
        return None

    def moved(lo: int, hi: int, default: int) -> int:
        if find_silence is None or hi - lo <= 0:
            return default
        found = find_silence(lo, hi)
        if found is None:
            return default
        if not lo <= found <= hi:
            raise ValueError(f"find_silence({lo}, {hi}) returned {found}, outside the window")
        return int(found)

    chunks = []
    for i, (s, e) in enumerate(spans):
        room = min(search, (c - (e - s)) // 2)
        start = moved(max(0, s - room), s, s) if s > 0 else 0
        end = moved(e, min(total, e + room), e) if e < total else total
        chunks.append(Chunk(i, start, end))
    return chunks


def silence_finder(pcm: np.ndarray, *, min_silence_s: float = MIN_SILENCE_S) -> FindSilence:
    """A `find_silence` for `plan_chunks` that runs the Silero VAD on one window at a time.

    The returned function `find(lo, hi)` reads only `pcm[lo:hi]` (sample offsets, clamped to the
    audio; a memmap reads just those pages), converts it to float32 in [-1, 1), and runs Silero
    VAD v6 (the ONNX model shipped in faster-whisper, `faster_whisper.vad.get_speech_timestamps`
    at 16 kHz, threshold 0.5, 100 ms minimum silence, 30 ms padding). The non-speech gaps are the
    stretches of the window outside the speech regions, including a gap touching either window
    edge (a window without speech is one gap). It returns the sample index (absolute, into `pcm`)
    of the middle of the longest gap of at least `min_silence_s` seconds, the earliest of equals,
    or None when no gap is that long.

    Args:
        pcm: int16 (or float in [-1, 1)) samples at 16 kHz, e.g. `pipeline.audio.open_pcm(path)`.
        min_silence_s: shortest usable pause in seconds.

    Raises:
        ValueError: `min_silence_s` is not a positive finite number.
    """
    if not (math.isfinite(min_silence_s) and min_silence_s > 0):
        raise ValueError(f"min_silence_s must be a positive number, got {min_silence_s}")
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # the ONNX runtime loads on first use

    min_gap = round(min_silence_s * SAMPLE_RATE)
    options = VadOptions(
        threshold=VAD_THRESHOLD, min_silence_duration_ms=VAD_MIN_SILENCE_MS, speech_pad_ms=VAD_SPEECH_PAD_MS
    )

    def find(lo: int, hi: int) -> int | None:
        lo, hi = max(0, lo), min(len(pcm), hi)
        if hi - lo < min_gap:
            return None
        window = np.asarray(pcm[lo:hi], dtype=np.float32)
        if np.issubdtype(pcm.dtype, np.integer):
            window /= _INT16_SCALE
        speech = get_speech_timestamps(window, options, sampling_rate=SAMPLE_RATE)
        gaps: list[tuple[int, int]] = []
        prev = 0
        for region in speech:
            gaps.append((prev, int(region["start"])))
            prev = max(prev, int(region["end"]))
        gaps.append((prev, hi - lo))
        best = max(gaps, key=lambda g: g[1] - g[0])  # max() keeps the first of equals
        if best[1] - best[0] < min_gap:
            return None
        return lo + (best[0] + best[1]) // 2

    return find
