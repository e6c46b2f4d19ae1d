"""ASR windows made once per file: grouping on a grid, exact chunk slicing (the VAD on real speech is in
integration/test_vad_regions.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.windows import (
    chunk_windows,
    grid_windows,
    precomputed_windows,
    speech_regions,
)
from whisperx_service.pipeline.models.vad import OfflineSileroVad

#: Speech regions of a 100 s file, in absolute seconds: 4-6 s of speech, 1-2 s pauses.
SPANS = [(1.0, 6.0), (7.5, 12.0), (13.0, 18.5), (20.0, 25.0), (26.0, 31.5), (33.0, 38.0), (39.0, 44.0),
         (45.5, 51.0), (52.0, 57.5), (58.5, 63.0), (64.0, 69.5), (71.0, 76.0), (77.0, 82.5), (84.0, 89.0),
         (90.0, 95.5)]  # fmt: skip


def test_windows_respect_the_grid_and_the_length() -> None:
    windows = grid_windows(SPANS, 30.0)
    assert [r for w in windows for r in w["segments"]] == SPANS  # every region once, in order
    for w in windows:
        assert (w["start"], w["end"]) == (w["segments"][0][0], w["segments"][-1][1])
        assert w["end"] - w["start"] <= 30.0
        assert len({int(s // 30) for s, _ in w["segments"]}) == 1  # all regions start in one grid cell
    # A window starts at the first region of every grid cell: a boundary sits near each grid line.
    assert [w["start"] for w in windows] == [1.0, 26.0, 33.0, 64.0, 90.0]  # 26: 1-31.5 would pass 30 s


def test_a_single_region_longer_than_the_window_is_kept_whole() -> None:
    windows = grid_windows([(0.0, 10.0), (11.0, 45.0)], 30.0)
    assert [w["segments"] for w in windows] == [[(0.0, 10.0)], [(11.0, 45.0)]]


def test_bad_window() -> None:
    with pytest.raises(ValueError, match="window_s"):
        grid_windows([], 0.0)


def test_chunk_windows_slice_the_samples_a_single_pass_slices() -> None:
    windows = grid_windows([(s + 0.123456, e + 0.0654321) for s, e in SPANS], 30.0)
    origin_s = 19.0
    local = chunk_windows(windows, 19.7, 70.2, origin_s)
    origin = int(origin_s * SAMPLE_RATE)
    whole = [w for w in windows if w["start"] >= 19.7 and w["end"] <= 70.2]
    assert whole
    for w in whole:
        (mine,) = [x for x in local if abs(x["start"] + origin_s - w["start"]) < 1e-3]
        # WhisperX slices int(t * 16000): the chunk's slice is the single pass's slice, to the sample.
        assert int(mine["start"] * SAMPLE_RATE) + origin == int(w["start"] * SAMPLE_RATE)
        assert int(mine["end"] * SAMPLE_RATE) + origin == int(w["end"] * SAMPLE_RATE)
        assert len(mine["segments"]) == len(w["segments"])
    # Windows cut by the chunk's edges keep only their part inside it.
    assert min(x["start"] for x in local) + origin_s >= 19.7 - 1e-4
    assert max(x["end"] for x in local) + origin_s <= 70.2 + 1e-4
    assert chunk_windows(windows, 96.0, 100.0, 96.0) == []


def test_precomputed_windows_swap_the_vad_for_the_block_only() -> None:
    class Pipe:
        def __init__(self) -> None:
            self.vad_model: Any = OfflineSileroVad()

    pipe, windows = Pipe(), grid_windows(SPANS, 30.0)
    own = pipe.vad_model
    with precomputed_windows(pipe, windows):
        vad = pipe.vad_model
        # What WhisperX's transcribe calls, in its order: no model runs, the windows come back.
        assert vad({"waveform": vad.preprocess_audio(np.zeros(16_000, np.float32)), "sample_rate": 16_000}) is None
        assert vad.merge_chunks(None, 30.0, onset=0.5, offset=None) is windows
    assert pipe.vad_model is own


def test_bad_blocks_are_refused() -> None:
    with pytest.raises(ValueError, match="block_s"):
        speech_regions(np.zeros(10, np.int16), OfflineSileroVad(), chunk_size=30.0, onset=0.5, offset=None, block_s=0)
