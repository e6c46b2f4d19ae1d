"""ASR windows on an absolute time grid: a chunk groups its speech regions like the single pass."""

from __future__ import annotations

from typing import Any

import pytest
from whisperx.vads.vad import Vad

from whisperx_service.pipeline.asr_windows import grid_windows, windows_on_grid


class _Region:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end, self.speaker = start, end, "UNKNOWN"


def _regions(spans: list[tuple[float, float]]) -> list[_Region]:
    return [_Region(s, e) for s, e in spans]


#: Speech regions of a 100 s file, in absolute seconds: 4-6 s of speech, 1-2 s pauses.
SPANS = [(1.0, 6.0), (7.5, 12.0), (13.0, 18.5), (20.0, 25.0), (26.0, 31.5), (33.0, 38.0), (39.0, 44.0),
         (45.5, 51.0), (52.0, 57.5), (58.5, 63.0), (64.0, 69.5), (71.0, 76.0), (77.0, 82.5), (84.0, 89.0),
         (90.0, 95.5)]  # fmt: skip


def _grid(spans: list[tuple[float, float]], origin: float, window: float = 30.0) -> list[list[tuple[float, float]]]:
    merged = Vad.merge_chunks(_regions([(s - origin, e - origin) for s, e in spans]), window, 0.5, None)
    out = grid_windows(merged, origin, window)
    return [[(round(s + origin, 3), round(e + origin, 3)) for s, e in w["segments"]] for w in out]


def test_windows_respect_the_grid_and_the_length() -> None:
    windows = _grid(SPANS, 0.0)
    assert [r for w in windows for r in w] == SPANS  # every region once, in order
    for w in windows:
        assert w[-1][1] - w[0][0] <= 30.0
        assert len({int(s // 30) for s, _ in w}) == 1  # all regions start in one grid cell


def test_a_chunk_gets_the_single_pass_windows_away_from_its_edges() -> None:
    single = _grid(SPANS, 0.0)
    origin = 19.5  # a chunk starting in the pause before the region at 20 s
    chunk = _grid([r for r in SPANS if r[0] >= origin], origin)
    inner = [w for w in single if w[0][0] >= 30.0]  # windows of cells the chunk holds whole
    assert inner and all(w in chunk for w in inner)
    # WhisperX's own greedy merge from the chunk's start gives other windows for the same cells.
    greedy = [
        [(round(s + origin, 3), round(e + origin, 3)) for s, e in w["segments"]]
        for w in Vad.merge_chunks(_regions([(s - origin, e - origin) for s, e in SPANS if s >= origin]), 30, 0.5, None)
    ]
    assert not all(w in greedy for w in inner)


def test_a_single_region_longer_than_the_window_is_kept_whole() -> None:
    assert _grid([(0.0, 10.0), (11.0, 45.0)], 0.0) == [[(0.0, 10.0)], [(11.0, 45.0)]]


def test_bad_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        grid_windows([], 0.0, 0.0)


def test_windows_on_grid_patches_one_pipeline_and_restores_it() -> None:
    class Pipe:
        def __init__(self) -> None:
            self.vad_model: Any = Vad(0.5)

    pipe = Pipe()
    regions = _regions(SPANS)
    with windows_on_grid(pipe, 0.0, 30.0):
        got = pipe.vad_model.merge_chunks(regions, 30.0, onset=0.5, offset=None)
    assert [[tuple(r) for r in w["segments"]] for w in got] == _grid(SPANS, 0.0)
    assert "merge_chunks" not in vars(pipe.vad_model)
    assert pipe.vad_model.merge_chunks(regions, 30.0, 0.5, None) == Vad.merge_chunks(regions, 30.0, 0.5, None)
