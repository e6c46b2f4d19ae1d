"""Chunk planning for long audio (`whisperx_service.pipeline.audio.chunks`)."""

from __future__ import annotations

import json
import random
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from whisperx_service.config import BYTES_PER_SAMPLE, SAMPLE_RATE
from whisperx_service.pipeline.audio.chunks import Chunk, plan_chunks


def seconds(s: float) -> int:
    return round(s * SAMPLE_RATE)


def nbytes(s: float) -> int:
    """Bytes of decoded audio in `s` seconds."""
    return seconds(s) * BYTES_PER_SAMPLE


def check_plan(chunks: list[Chunk], total: int, chunk_bytes: int, *, max_cover: int = 3) -> None:
    """Invariants every plan keeps, whatever the sizes and silences; `max_cover`: chunks per sample."""
    c = chunk_bytes // BYTES_PER_SAMPLE
    assert [k.index for k in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0 and chunks[-1].end == total
    for k in chunks:
        assert 0 < k.num_samples <= c  # never more than chunk_bytes of decoded audio
    for a, b in pairwise(chunks):
        assert a.start < b.start < a.end < b.end  # overlapping, in order: every sample is covered
    if max_cover == 2:  # every sample lies in one or two chunks, never three
        for a, b in zip(chunks, chunks[2:], strict=False):
            assert a.end <= b.start
    # The overlap midpoints of a chunk's two seams do not cross (merge cuts there).
    mids = [(b.start + a.end) / 2 for a, b in pairwise(chunks)]
    assert mids == sorted(set(mids))


def coverage(chunks: list[Chunk], total: int) -> np.ndarray:
    counts = np.zeros(total, dtype=np.int32)
    for k in chunks:
        counts[k.start : k.end] += 1
    return counts


# --------------------------------------------------------------------------- Chunk


def test_chunk_times_and_json_round_trip() -> None:
    k = Chunk(2, seconds(10), seconds(25.5))
    assert (k.start_s, k.end_s, k.duration_s, k.num_samples) == (10.0, 25.5, 15.5, seconds(15.5))
    data = json.loads(json.dumps(k.to_dict()))
    assert data == {"index": 2, "start": 160_000, "end": 408_000}
    assert Chunk.from_dict(data) == k


@pytest.mark.parametrize(
    "data",
    [{"index": 0, "start": 0}, {"index": 0, "start": 0.5, "end": 9}, {"index": 0, "start": 9, "end": 3}],
)
def test_chunk_from_dict_rejects_bad_data(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Chunk.from_dict(data)


def test_chunk_rejects_negative_or_reversed_bounds() -> None:
    for args in [(-1, 0, 1), (0, -5, 1), (0, 10, 9)]:
        with pytest.raises(ValueError):
            Chunk(*args)


# --------------------------------------------------------------------------- plan_chunks


def test_short_file_is_one_chunk() -> None:
    assert plan_chunks(seconds(7), chunk_bytes=nbytes(20), overlap_s=5) == [Chunk(0, 0, seconds(7))]
    assert plan_chunks(seconds(20), chunk_bytes=nbytes(20), overlap_s=5) == [Chunk(0, 0, seconds(20))]
    assert plan_chunks(0, chunk_bytes=nbytes(20), overlap_s=5) == []


def test_plan_covers_every_sample_with_exact_overlaps() -> None:
    total = seconds(61.3)
    chunks = plan_chunks(total, chunk_bytes=nbytes(20), overlap_s=5)
    check_plan(chunks, total, nbytes(20), max_cover=2)
    assert len(chunks) == 4  # ceil((61.3 - 5) / (20 - 5))
    assert all(a.end - b.start == seconds(5) for a, b in pairwise(chunks))
    counts = coverage(chunks, total)
    assert counts.min() == 1 and counts.max() == 2 and int((counts == 2).sum()) == 3 * seconds(5)


def test_last_chunk_is_never_a_sliver() -> None:
    # 20.5 s with 20 s chunks: a naive plan would end with [15 s, 20.5 s) after a full chunk.
    total = seconds(20.5)
    chunks = plan_chunks(total, chunk_bytes=nbytes(20), overlap_s=5)
    check_plan(chunks, total, nbytes(20))
    assert len(chunks) == 2
    assert min(k.duration_s for k in chunks) >= (20 + 5) / 2 - 0.01  # balanced: about 12.75 s each


def test_plan_invariants_over_many_sizes() -> None:
    rng = random.Random(7)
    for _ in range(300):
        chunk_s = rng.uniform(3, 60)
        overlap_s = rng.uniform(0, chunk_s / 2 - 0.01)
        total = rng.randint(1, seconds(400))
        chunk_bytes = nbytes(chunk_s) + rng.choice([0, 1])  # an odd byte count rounds down
        chunks = plan_chunks(total, chunk_bytes=chunk_bytes, overlap_s=overlap_s)
        # A sample is in two chunks at most when the chunk is at least three overlaps long.
        check_plan(chunks, total, chunk_bytes, max_cover=2 if chunk_bytes // 2 >= 3 * seconds(overlap_s) else 3)
        o = seconds(overlap_s)
        assert all(a.end - b.start == o for a, b in pairwise(chunks)) or o == 0
        if len(chunks) > 1:
            assert min(k.num_samples for k in chunks) >= (chunk_bytes // 2 + o) / 2 - 1


def test_ten_hours_with_default_settings() -> None:
    total = seconds(10 * 3600)
    chunks = plan_chunks(total, chunk_bytes=500 * 1000**2, overlap_s=30)
    check_plan(chunks, total, 500 * 1000**2, max_cover=2)
    assert len(chunks) == 3  # 500 MB of 16 kHz int16 is 15,625 s
    assert all(k.num_samples * BYTES_PER_SAMPLE <= 500 * 1000**2 for k in chunks)


@pytest.mark.parametrize(("chunk_s", "overlap_s"), [(10, 5), (10, 6), (1, 30)])
def test_chunk_must_exceed_twice_the_overlap(chunk_s: float, overlap_s: float) -> None:
    with pytest.raises(ValueError, match="twice the overlap"):
        plan_chunks(seconds(100), chunk_bytes=nbytes(chunk_s), overlap_s=overlap_s)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_chunks(-1, chunk_bytes=nbytes(20), overlap_s=5)
    with pytest.raises(ValueError):
        plan_chunks(100, chunk_bytes=nbytes(20), overlap_s=-1)
    with pytest.raises(ValueError):
        plan_chunks(100, chunk_bytes=nbytes(20), overlap_s=float("nan"))


class FakeSilences:
    """`find_silence` over known pauses: returns the middle of the longest pause part in [lo, hi]."""

    def __init__(self, pauses: list[tuple[int, int]]) -> None:
        self.pauses = pauses
        self.calls: list[tuple[int, int, int | None]] = []

    def __call__(self, lo: int, hi: int) -> int | None:
        parts = [(max(a, lo), min(b, hi)) for a, b in self.pauses if min(b, hi) - max(a, lo) > 0]
        found = None
        if parts:
            a, b = max(parts, key=lambda p: p[1] - p[0])
            found = (a + b) // 2
        self.calls.append((lo, hi, found))
        return found

    def inside(self, x: int) -> bool:
        return any(a <= x <= b for a, b in self.pauses)


def test_cuts_move_into_silences_found_before_the_nominal_cut() -> None:
    rng = random.Random(3)
    total = seconds(95)
    # A pause of 0.4-1 s after every 1-2 s of speech, as in conversation.
    pauses: list[tuple[int, int]] = []
    t = seconds(1)
    while t < total:
        length = seconds(rng.uniform(0.4, 1.0))
        pauses.append((t, t + length))
        t += length + seconds(rng.uniform(1, 2))
    finder = FakeSilences(pauses)
    chunks = plan_chunks(total, chunk_bytes=nbytes(20), overlap_s=5, find_silence=finder, search_s=4)
    check_plan(chunks, total, nbytes(20))
    s_eff = min(seconds(4), (seconds(20) - 2 * seconds(5) - 1) // 4)  # 2.5 s for these sizes
    for lo, hi, found in finder.calls:
        assert hi - lo == s_eff  # only a window of S samples just before each nominal cut
        assert found is not None
    for a, b in pairwise(chunks):
        assert finder.inside(a.end) and finder.inside(b.start)
        assert seconds(5) <= a.end - b.start <= seconds(5) + s_eff  # overlap about overlap_s


def test_nominal_cuts_where_no_silence_is_found() -> None:
    total = seconds(61.3)
    never = FakeSilences([])
    assert plan_chunks(total, chunk_bytes=nbytes(20), overlap_s=5, find_silence=never) == plan_chunks(
        total, chunk_bytes=nbytes(20), overlap_s=5
    )
    assert never.calls


def test_find_silence_outside_its_window_is_an_error() -> None:
    def bad(lo: int, hi: int) -> int:
        return hi + 1

    with pytest.raises(ValueError, match="outside"):
        plan_chunks(seconds(60), chunk_bytes=nbytes(20), overlap_s=5, find_silence=bad)


@pytest.mark.parametrize(
    ("total_s", "chunk_s", "overlap_s", "grid_s"),
    [(300, 60, 10, 30), (301.7, 60, 10, 30), (130, 20, 4, 10), (40_000, 15_625, 30, 30), (95, 60, 10, 30)],
)
def test_grid_plan_centres_every_overlap_on_an_asr_window_line(
    total_s: float, chunk_s: float, overlap_s: float, grid_s: float
) -> None:
    total, chunk_bytes = seconds(total_s), nbytes(chunk_s)
    chunks = plan_chunks(total, chunk_bytes=chunk_bytes, overlap_s=overlap_s, grid_s=grid_s)
    check_plan(chunks, total, chunk_bytes)
    for a, b in pairwise(chunks):
        mid = (b.start + a.end) / 2
        assert mid % seconds(grid_s) == 0, f"overlap centred at {mid / SAMPLE_RATE} s"
        assert a.end - b.start == seconds(overlap_s)
    ungridded = plan_chunks(total, chunk_bytes=chunk_bytes, overlap_s=overlap_s)
    assert len(chunks) <= 2 * len(ungridded)  # the grid costs at most twice the chunks (stride >= grid)


def test_grid_plan_falls_back_when_a_chunk_cannot_span_a_grid_step() -> None:
    kwargs: dict[str, Any] = {"chunk_bytes": nbytes(30), "overlap_s": 10}
    assert plan_chunks(seconds(100), grid_s=30, **kwargs) == plan_chunks(seconds(100), **kwargs)


def test_grid_plan_moves_edges_outwards_into_silence_within_the_chunk_size() -> None:
    total, chunk_bytes = seconds(300), nbytes(60)
    calls: list[tuple[int, int]] = []

    def find(lo: int, hi: int) -> int:
        calls.append((lo, hi))
        return lo + (hi - lo) // 3

    chunks = plan_chunks(total, chunk_bytes=chunk_bytes, overlap_s=10, grid_s=30, find_silence=find)
    plain = plan_chunks(total, chunk_bytes=chunk_bytes, overlap_s=10, grid_s=30)
    check_plan(chunks, total, chunk_bytes)
    assert calls
    for moved, nominal in zip(chunks, plain, strict=True):
        assert moved.start <= nominal.start and moved.end >= nominal.end  # only ever outwards
        assert (moved.start, moved.end) != (nominal.start, nominal.end) or moved.index in (0, len(plain) - 1)
