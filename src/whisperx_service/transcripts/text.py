"""Text rules of a transcript: which languages join words without spaces, which tokens close a phrase.

Pure Python, shared by the pipeline (segment text) and the renderers (subtitle cues).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

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

    Such tokens are glued to the previous word when text is rebuilt ("world" + "," -> "world,").
    The set is openai-whisper's `append_punctuations` (`.。,，!！?？:：”)]}、`) plus `;；…»` and the
    remaining closing brackets and final quotes (Unicode categories Pe and Pf), without the
    ambiguous straight quotes. Tokens such as "&", "-", "(" or "¿" are words of their own.
    """
    t = token.strip()
    return bool(t) and all(c in _TRAILING or unicodedata.category(c) in ("Pe", "Pf") for c in t)


def join_words(tokens: Iterable[str], sep: str = " ") -> str:
    """Rebuild text from word tokens: join with `sep`, but no separator before trailing punctuation.

    Tokens are stripped and inner whitespace (including newlines) collapses to one space; empty
    tokens add nothing. A token made only of trailing punctuation (`is_trailing_punctuation`)
    is glued to the text before it. Words usually carry their own punctuation (WhisperX splits the
    segment text on spaces), so this is the inverse of that split.
    """
    out = ""
    for raw in tokens:
        tok = " ".join(raw.split())
        if not tok:
            continue
        out = tok if not out else (out + tok if is_trailing_punctuation(tok) else out + sep + tok)
    return out
