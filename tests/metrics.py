"""Scoring helpers for tests: WER (Whisper's English normaliser), DER, word-to-speaker accuracy."""

from __future__ import annotations

import difflib
from itertools import permutations
from typing import Any

import jiwer
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate
from whisper_normalizer.english import EnglishTextNormalizer

from tests.speech import Turn

_norm = EnglishTextNormalizer()


def normalize(text: str) -> str:
    """openai-whisper's English text normaliser (as packaged in whisper-normalizer)."""
    return str(_norm(text))


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of normalised texts (jiwer)."""
    return float(jiwer.wer(normalize(reference), normalize(hypothesis)))


def der(reference: list[Turn], hypothesis: list[tuple[float, float, str]], collar: float = 0.0) -> float:
    """Diarization error rate (pyannote.metrics), optimal label mapping, given collar (s)."""
    ref, hyp = Annotation(), Annotation()
    for t in reference:
        ref[Segment(t.start, t.end)] = t.speaker
    for s, e, spk in hypothesis:
        hyp[Segment(s, e)] = spk
    return float(DiarizationErrorRate(collar=collar)(ref, hyp))


def word_speaker_accuracy(reference: list[Turn], words: list[dict[str, Any]]) -> tuple[float, int]:
    """Share of matched words whose speaker is right under the best one-to-one label mapping.

    Reference words come from the turns' texts; hypothesis words are matched to them by a
    difflib alignment of normalised word sequences.
    Returns:
        (accuracy 0-1, number of matched words).
    """
    ref_words = [(w, t.speaker) for t in reference for w in normalize(t.text).split()]
    hyp_words = [(w2, w.get("speaker")) for w in words for w2 in normalize(w["word"]).split()]
    sm = difflib.SequenceMatcher(a=[r[0] for r in ref_words], b=[h[0] for h in hyp_words], autojunk=False)
    pairs = [(ref_words[b.a + k][1], hyp_words[b.b + k][1]) for b in sm.get_matching_blocks() for k in range(b.size)]
    hyp_labels = sorted({h for _, h in pairs if h})
    ref_labels = sorted({r for r, _ in pairs})
    best = 0
    for perm in permutations(hyp_labels, min(len(hyp_labels), len(ref_labels))):
        mapping = dict(zip(perm, ref_labels, strict=False))
        best = max(best, sum(1 for r, h in pairs if mapping.get(h) == r))
    return best / max(1, len(pairs)), len(pairs)
