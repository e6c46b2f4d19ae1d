"""Text that is final before the job ends: a chunk's words once the seam after it is decided.

The merge (`post/merge.py`) keeps each word of chunk k by its two seams: cut k-1 (with chunk k-1)
and cut k (with chunk k+1). Cut k depends only on chunks k and k+1's words, the plan's chunk
bounds (every overlap midpoint) and the cuts before it, so once chunk k+1 is transcribed the kept
words of chunk k are the ones the final merge keeps. `final_chunk_text` computes them as the merge
will, with the chunks not yet run standing in as chunks without words.

Speakers are not final then (they are linked across chunks at the end), so this is text only.
"""

from __future__ import annotations

from collections.abc import Sequence

from whisperx_service.domain.transcript import Word
from whisperx_service.pipeline.audio.chunks import Chunk
from whisperx_service.pipeline.audio.windows import Window
from whisperx_service.pipeline.post.merge import merge_chunk_words, seam_cuts, window_cuts


def final_chunk_words(
    done: Sequence[Sequence[Word]], chunks: Sequence[Chunk], windows: Sequence[Window] | None, k: int
) -> list[Word]:
    """The words of chunk `k` that the final merge keeps, in time order.

    Args:
        done: the words (absolute seconds) of chunks 0..len(done)-1, the ones transcribed so far.
        chunks: every chunk of the plan, in order (`len(chunks) >= len(done)`).
        windows: the plan's ASR windows (absolute seconds), as `runner.merge_results` gets them.
        k: the chunk whose words are asked for; chunk k+1 must be done (`k + 1 < len(done)`)
            unless k is the last chunk.
    Returns:
        The kept `Word` objects of `done[k]` (not copies), sorted as the merge sorts them.
    Raises:
        ValueError: chunk k+1 is not done yet, or the chunks are out of order (as `seam_cuts`).
    """
    if k + 1 >= len(done) and k != len(chunks) - 1:
        raise ValueError(f"chunk {k} is final only once chunk {k + 1} is done ({len(done)} done)")
    parts = [(c, list(done[i]) if i < len(done) else []) for i, c in enumerate(chunks)]
    cuts = seam_cuts(parts)
    if windows:
        cuts = window_cuts(list(chunks), [(w["start"], w["end"]) for w in windows], cuts)
    upto = min(k + 2, len(chunks))  # chunk k's words are decided by seams k-1 and k only
    kept = merge_chunk_words(parts[:upto], cuts=cuts[: upto - 1])
    mine = {id(w) for w in done[k]}
    return [w for w in kept if id(w) in mine]


def words_text(words: Sequence[Word]) -> str:
    """The text of consecutive words as a segment's text is made (`post/segments.build_segments`):
    their `word`s, each carrying the text before it, joined and stripped."""
    return "".join(w.word for w in words).strip()
