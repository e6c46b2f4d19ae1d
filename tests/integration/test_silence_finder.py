"""`silence_finder` (Silero VAD) on real espeak-ng speech: chunk cuts land in the pauses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.speech import synth
from tests.unit.test_chunks import check_plan, nbytes, seconds
from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.chunks import plan_chunks, silence_finder
from whisperx_service.pipeline.audio.pcm import open_pcm


def two_utterances(tmp_path: Path, gap_s: float = 1.5) -> tuple[Path, int, int]:
    """Two espeak-ng utterances with `gap_s` of digital silence between; PCM path and the gap's bounds."""
    first = synth("The meeting starts at nine in the morning", "A", tmp_path / "a.wav")
    second = synth("Please bring the signed contract with you", "B", tmp_path / "b.wav")
    gap = b"\x00\x00" * seconds(gap_s)
    path = tmp_path / "audio.pcm"
    path.write_bytes(first + gap + second)
    start = len(first) // 2
    return path, start, start + seconds(gap_s)


def test_silence_finder_cuts_inside_the_pause_between_real_utterances(tmp_path: Path) -> None:
    path, gap_start, gap_end = two_utterances(tmp_path)
    pcm = open_pcm(path)
    find = silence_finder(pcm)
    cut = find(0, len(pcm))
    assert cut is not None and gap_start < cut < gap_end
    # A window that starts inside the first utterance and ends inside the second one.
    cut = find(gap_start - seconds(1.2), gap_end + seconds(0.8))
    assert cut is not None and gap_start < cut < gap_end
    # The middle of the pause, give or take Silero's frame and padding (32 ms frames, 30 ms pad).
    assert abs(cut - (gap_start + gap_end) / 2) < seconds(0.1)


def test_silence_finder_none_inside_speech_and_only_the_window_is_read(tmp_path: Path) -> None:
    path, gap_start, _ = two_utterances(tmp_path)
    reads: list[Any] = []

    class Recorder(np.ndarray):
        def __getitem__(self, key: Any) -> Any:
            reads.append(key)
            return super().__getitem__(key)

    pcm = open_pcm(path).view(Recorder)
    find: Callable[[int, int], int | None] = silence_finder(pcm, min_silence_s=0.3)
    assert find(gap_start - seconds(1.0), gap_start) is None  # the last second of speech before the pause
    assert find(10, 10 + seconds(0.2)) is None  # shorter than min_silence_s: not even read
    assert reads == [slice(gap_start - seconds(1.0), gap_start)]
    with pytest.raises(ValueError):
        silence_finder(pcm, min_silence_s=0)


def test_plan_with_silence_finder_cuts_only_between_real_turns(tmp_path: Path) -> None:
    phrases = [
        "good morning everybody",
        "thank you for joining the call",
        "let us start with the budget",
        "the numbers look better this year",
        "sales went up in the north",
        "costs stayed about the same",
        "we hired two new engineers",
        "the product ships in march",
        "any questions before we continue",
        "then let us move on",
    ]
    pause = seconds(1.2)
    pcm_bytes = b""
    speech: list[tuple[int, int]] = []
    for i, text in enumerate(phrases):
        if i:
            pcm_bytes += b"\x00\x00" * pause
        data = synth(text, "ABC"[i % 3], tmp_path / f"p{i}.wav")
        speech.append((len(pcm_bytes) // 2, len(pcm_bytes) // 2 + len(data) // 2))
        pcm_bytes += data
    path = tmp_path / "talk.pcm"
    path.write_bytes(pcm_bytes)
    pcm = open_pcm(path)
    total = len(pcm)
    assert total > seconds(16)

    chunks = plan_chunks(total, chunk_bytes=nbytes(16), overlap_s=2, find_silence=silence_finder(pcm))
    check_plan(chunks, total, nbytes(16))
    assert len(chunks) >= 2
    cuts = [k.end for k in chunks[:-1]] + [k.start for k in chunks[1:]]
    for cut in cuts:
        # Every cut lies in a pause between phrases, never inside one (30 ms of VAD padding aside).
        assert not any(a + seconds(0.05) < cut < b - seconds(0.05) for a, b in speech), cut / SAMPLE_RATE
