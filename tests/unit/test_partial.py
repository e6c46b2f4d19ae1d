"""`pipeline/post/partial.py`: a chunk's words, said final once the next chunk is done, are the ones
the merge of the whole file keeps."""

from __future__ import annotations

import random

import pytest

from whisperx_service.domain.transcript import Word
from whisperx_service.pipeline.audio.chunks import SAMPLE_RATE, Chunk
from whisperx_service.pipeline.post.merge import merge_chunk_words, seam_cuts, window_cuts
from whisperx_service.pipeline.post.partial import final_chunk_words, words_text

CHUNK_S, OVERLAP_S, N = 20.0, 4.0, 5


def _chunks() -> list[Chunk]:
    step = CHUNK_S - OVERLAP_S
    return [Chunk(i, round(i * step * SAMPLE_RATE), round((i * step + CHUNK_S) * SAMPLE_RATE)) for i in range(N)]


def _heard(chunks: list[Chunk], rng: random.Random) -> list[list[Word]]:
    """What each chunk heard: one spoken word every ~0.45 s; a word in an overlap is heard by both
    chunks with jittered times, and now and then only by one of them (a chunk edge cuts it)."""
    spoken: list[tuple[str, float, float]] = []
    t = 0.2
    while t < chunks[-1].end_s - 0.5:
        d = rng.uniform(0.2, 0.35)
        spoken.append((f" w{len(spoken)}", t, t + d))
        t += d + rng.uniform(0.05, 0.3)
    out: list[list[Word]] = []
    for c in chunks:
        words = []
        for text, a, b in spoken:
            if a >= c.start_s and b <= c.end_s:
                if (a < c.start_s + 0.5 or b > c.end_s - 0.5) and rng.random() < 0.3:
                    continue  # lost at the chunk's edge
                j = rng.uniform(-0.02, 0.02)
                words.append(Word(word=text, start=round(a + j, 3), end=round(b + j, 3), score=0.9))
        out.append(words)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_windows", [False, True])
def test_each_chunks_final_words_are_what_the_whole_merge_keeps(seed: int, with_windows: bool) -> None:
    chunks = _chunks()
    heard = _heard(chunks, random.Random(seed))
    windows = [{"start": s, "end": min(s + 9.5, chunks[-1].end_s)} for s in range(0, int(chunks[-1].end_s), 10)]
    parts = [(c, w) for c, w in zip(chunks, heard, strict=True)]
    cuts = seam_cuts(parts)
    if with_windows:
        cuts = window_cuts(chunks, [(w["start"], w["end"]) for w in windows], cuts)
    merged = merge_chunk_words(parts, cuts=cuts)
    early: list[Word] = []
    for k in range(N - 1):
        # Only chunks 0..k+1 are done; the later ones are not even transcribed yet.
        got = final_chunk_words(heard[: k + 2], chunks, windows if with_windows else None, k)
        mine = {id(w) for w in heard[k]}
        assert [id(w) for w in got] == [id(w) for w in merged if id(w) in mine], f"chunk {k}"
        early += got
    # Joined as the stream joins them, the early texts are the start of the whole file's text.
    whole = words_text(merged)
    assert whole.startswith(" ".join(words_text(heard_k) for heard_k in [early]))
    assert len(early) < len(merged)


def test_a_chunk_is_not_final_before_the_next_one_is_done() -> None:
    chunks = _chunks()
    heard = _heard(chunks, random.Random(0))
    with pytest.raises(ValueError, match="once chunk 2 is done"):
        final_chunk_words(heard[:2], chunks, None, 1)
