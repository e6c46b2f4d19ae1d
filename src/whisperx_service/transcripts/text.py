"""Text rules of a transcript: which languages join words without spaces, which tokens close a phrase.

Pure Python, shared by the pipeline (segment text) and the renderers (subtitle cues).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

#: Languages written without spaces between words: openai-whisper's tokenizer splits their words on
#: Unicode characters instead of spaces (`Tokenizer.split_to_word_tokens`), and WhisperX joins
#: "ja"/"zh" words with "" (`whisperx.alignment.LANGUAGES_WITHOUT_SPACES`).
LANGUAGES_WITHOUT_SPACES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})


_TRAILING = frozenset(".。,，!！?？:：”)]}、;；…»")


def word_separator(language: str | None) -> str:
    """The string that joins two words of `language` (an ISO 639-1 code): "" or " "."""
    return "" if (language or "").lower() in LANGUAGES_WITHOUT_SPACES else " "


def is_trailing_punctuation(token: str) -> bool:
    """True when `token` is non-empty and made only of punctuation that closes what precedes it.

    Such tokens are glued to the previous word when subtitle lines are cut ("world" + "," -> "world,").
    The set is openai-whisper's `append_punctuations` (`.。,，!！?？:：”)]}、`) plus `;；…»` and the
    remaining closing brackets and final quotes (Unicode categories Pe and Pf), without the
    ambiguous straight quotes. Tokens such as "&", "-", "(" or "¿" are words of their own.
    """
    t = token.strip()
    return bool(t) and all(c in _TRAILING or unicodedata.category(c) in ("Pe", "Pf") for c in t)


def words_with_spacing(text: str, words: Sequence[str], sep: str = " ") -> list[str]:
    """Each word of `text` with the text that precedes it there, so the words concatenate to `text`.

    Args:
        text: the text the words were cut from, e.g. a WhisperX segment's `text` (faster-whisper's
            decoded text, normally with one leading space).
        words: the words in order, each a piece of `text` (surrounding whitespace ignored), as
            WhisperX's aligners and `split()` make them.
        sep: `word_separator` of the text's language.

    Returns:
        One string per word: the whitespace between the previous word (or the start of `text`)
        and this word, then the word, found by locating each stripped word in `text` after the
        previous one. The first word keeps `text`'s leading whitespace, or gets `sep` when there is
        none. A word not found with only whitespace before it (the words do not come from `text`)
        gets `sep` and is not searched for further. An empty word stays empty. So
        `"".join(result).strip()` is `text.strip()` when the words cover it, and any run of
        consecutive results joined and stripped is `text` cut at those word boundaries.
    """
    out: list[str] = []
    cursor = 0
    for raw in words:
        word = raw.strip()
        if not word:
            out.append("")
            continue
        pos = text.find(word, cursor)
        if pos >= 0 and not text[cursor:pos].strip():
            gap = text[cursor:pos]
            cursor = pos + len(word)
        else:
            gap = sep
        if not gap and not any(out):
            gap = sep  # the first word: nothing precedes it in `text`
        out.append(gap + word)
    return out
