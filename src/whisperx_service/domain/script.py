"""The transcript an `align` job places on its audio (`jobs/<id>/transcript.json`).

A user sends it as the `transcript` form field: plain text (the words to place, any layout), or
JSON with timed segments, such as an earlier job's `result.json` (`{"segments": [{"start",
"end", "text"}, ...]}`) or a bare list of such segments. Segment times (seconds from the audio's
start) tell the aligner where each piece of text is; plain text has none, and the worker anchors
it on its own transcription first (`pipeline/stages/script.py`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator


class ScriptSegment(BaseModel):
    """A piece of the transcript said between `start` and `end` (seconds, end > start)."""

    start: float = Field(ge=0.0)
    end: float
    text: str

    @model_validator(mode="after")
    def _span(self) -> ScriptSegment:
        if self.end <= self.start:
            raise ValueError("a segment's end must be after its start")
        return self


class Script(BaseModel):
    """A user's transcript: `text` (plain, untimed) or `segments` (timed), never both."""

    text: str | None = None
    segments: list[ScriptSegment] | None = None

    @property
    def timed(self) -> bool:
        """True when the transcript carries segment times (no ASR needed to place it)."""
        return self.segments is not None

    def words(self) -> list[str]:
        """Its words (whitespace-separated pieces), in order."""
        if self.segments is not None:
            return [w for s in self.segments for w in s.text.split()]
        return (self.text or "").split()


def parse_script(raw: str) -> Script:
    """Read a `transcript` field: JSON when it starts with `{` or `[`, else plain text.

    JSON: an object with a `segments` list (an earlier job's result; other keys are ignored) or a
    list of segments; each segment needs `start`, `end` (seconds) and `text` (its other keys, such
    as `words` or `speaker`, are ignored).

    Raises:
        ValueError: not valid JSON of that shape, a segment without times or text, or no word
            at all; the message says which, in words a user can act on.
    """
    stripped = raw.strip()
    if not stripped.startswith(("{", "[")):
        if not stripped.split():
            raise ValueError("the transcript has no words")
        return Script(text=stripped)
    try:
        doc: Any = json.loads(stripped)
    except json.JSONDecodeError as e:
        raise ValueError(f"the transcript looks like JSON but is not valid JSON (line {e.lineno})") from None
    except RecursionError:
        raise ValueError("the transcript's JSON is nested too deep") from None
    items = doc.get("segments") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise ValueError("a JSON transcript needs a `segments` list (as a job's result has)")
    try:
        segments = [
            ScriptSegment.model_validate({k: s.get(k) for k in ("start", "end", "text")})
            for s in items
            if isinstance(s, dict)
        ]
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"a transcript segment is invalid: {first['msg']}") from None
    if len(segments) != len(items):
        raise ValueError("every transcript segment must be an object with start, end and text")
    segments = [s for s in segments if s.text.split()]
    if not segments:
        raise ValueError("the transcript has no words")
    return Script(segments=sorted(segments, key=lambda s: (s.start, s.end)))
