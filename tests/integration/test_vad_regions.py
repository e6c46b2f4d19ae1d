"""Speech regions found by the real Silero VAD by fixed blocks, on espeak-ng speech: the same as one pass."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from tests.speech import synth
from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.pcm import open_pcm
from whisperx_service.pipeline.audio.windows import speech_regions
from whisperx_service.pipeline.models.vad import OfflineSileroVad


def _speech(tmp_path: Path, parts: int = 6, gap_s: float = 1.5) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """espeak-ng sentences with `gap_s` of silence between: the int16 PCM and the true speech spans."""
    texts = ["The meeting starts at nine in the morning", "Please bring the signed contract with you",
             "We will review the budget for the next quarter", "The train to the airport leaves at noon"]  # fmt: skip
    pcm, spans, t = b"", [], 0.0
    for i in range(parts):
        data = synth(texts[i % len(texts)], "AB"[i % 2], tmp_path / f"{i}.wav")
        spans.append((t, t + len(data) / 2 / SAMPLE_RATE))
        pcm += data + b"\x00\x00" * int(gap_s * SAMPLE_RATE)
        t = len(pcm) / 2 / SAMPLE_RATE
    path = tmp_path / "audio.pcm"
    path.write_bytes(pcm)
    return open_pcm(path), spans


def test_blocks_are_stitched_into_the_regions_of_one_pass(tmp_path: Path) -> None:
    pcm, spans = _speech(tmp_path)
    vad = OfflineSileroVad()
    one = speech_regions(pcm, vad, chunk_size=30.0, onset=0.5, offset=None)
    seen: list[float] = []
    blocks = speech_regions(pcm, vad, chunk_size=30.0, onset=0.5, offset=None, block_s=7.0, context_s=3.0,
                            progress=seen.append)  # fmt: skip
    total = len(pcm) / SAMPLE_RATE
    assert len(seen) == int(np.ceil(total / 7.0)) and seen[-1] == 100.0 and seen == sorted(seen)
    for regions in (one, blocks):
        assert all(s < e for s, e in regions) and all(a[1] <= b[0] for a, b in itertools.pairwise(regions))
        # Every sentence is found, and no region lies in the silences between them.
        for s, e in spans:
            assert any(rs < e and re > s for rs, re in regions)
        for rs, re in regions:
            assert any(rs < e + 0.1 and re > s - 0.1 for s, e in spans)
    # Away from the block edges (7 s apart) the stitched regions are the single pass's.
    far = [r for r in one if all(abs(r[0] - 7 * k) > 3 and abs(r[1] - 7 * k) > 3 for k in range(1, 10))]
    for s, e in far:
        assert any(abs(s - bs) < 0.05 and abs(e - be) < 0.05 for bs, be in blocks), (s, e)


def test_regions_do_not_depend_on_anything_but_the_file(tmp_path: Path) -> None:
    pcm, _ = _speech(tmp_path, parts=3)
    vad = OfflineSileroVad()
    first = speech_regions(pcm, vad, chunk_size=30.0, onset=0.5, offset=None, block_s=5.0, context_s=2.0)
    assert speech_regions(pcm, vad, chunk_size=30.0, onset=0.5, offset=None, block_s=5.0, context_s=2.0) == first
    assert speech_regions(pcm[:0], vad, chunk_size=30.0, onset=0.5, offset=None) == []
    silent = np.zeros(SAMPLE_RATE * 3, dtype=np.int16)
    assert speech_regions(silent, vad, chunk_size=30.0, onset=0.5, offset=None) == []
