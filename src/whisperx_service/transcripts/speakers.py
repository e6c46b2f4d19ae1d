"""Speaker names for downloads: `parse_speaker_names` reads the `speaker_names` parameter of a
result request, `rename_speakers` relabels a `Transcript` with it. Pure Python, no I/O.

The parameter is a JSON object from the transcript's speaker labels to the names a person gave
them, e.g. `{"SPEAKER_00": "Alice", "SPEAKER_01": "Bob"}` (JSON, not `label:name` pairs, so a
name may hold any character: commas, colons, quotes). Labels not in the object keep their label.
"""

from __future__ import annotations

import json
import unicodedata

from whisperx_service.domain.transcript import Transcript

#: Longest name (characters) a speaker may be given; a subtitle line is 42 characters
#: (formats.MAX_LINE_CHARS), so a longer name would be a line of its own.
MAX_NAME_CHARS = 80
#: Most entries in one `speaker_names` object (a job has at most 64 speakers: `JobOptions.max_speakers`).
MAX_NAMES = 64
#: Longest `speaker_names` value accepted (characters): MAX_NAMES entries of MAX_NAME_CHARS, escaped.
MAX_PARAM_CHARS = 16_384


def parse_speaker_names(raw: str) -> dict[str, str]:
    """The label -> name map of a `speaker_names` parameter.

    Names are trimmed and their inner whitespace (newlines and tabs included) collapsed to single
    spaces, so a name can never break a subtitle cue or a TSV row.

    Args:
        raw: the parameter's value, a JSON object of strings, at most MAX_PARAM_CHARS characters.
    Returns:
        label -> name, at most MAX_NAMES entries; an entry whose name equals its label is dropped.
    Raises:
        ValueError: not a JSON object of non-empty strings, too long, or a name that is empty after
            trimming, longer than MAX_NAME_CHARS, or holds a control character. The message says
            which and never echoes more than a short prefix of the input.
    """
    if len(raw) > MAX_PARAM_CHARS:
        raise ValueError(f"speaker_names is longer than {MAX_PARAM_CHARS} characters")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ValueError('speaker_names must be a JSON object such as {"SPEAKER_00": "Alice"}') from None
    if not isinstance(data, dict):
        raise ValueError('speaker_names must be a JSON object such as {"SPEAKER_00": "Alice"}')
    if len(data) > MAX_NAMES:
        raise ValueError(f"speaker_names has more than {MAX_NAMES} entries")
    names: dict[str, str] = {}
    for label, name in data.items():
        if not isinstance(name, str):
            raise ValueError(f"the name of {label[:40]!r} must be a string")
        clean = " ".join(name.split())
        if not clean:
            raise ValueError(f"the name of {label[:40]!r} is empty")
        if len(clean) > MAX_NAME_CHARS:
            raise ValueError(f"the name of {label[:40]!r} is longer than {MAX_NAME_CHARS} characters")
        if any(unicodedata.category(ch).startswith("C") for ch in clean):
            raise ValueError(f"the name of {label[:40]!r} holds a control or unassigned character")
        if clean != label:
            names[label] = clean
    return names


def rename_speakers(t: Transcript, names: dict[str, str]) -> Transcript:
    """A copy of `t` with every speaker label in `names` replaced by its name.

    Segments, words, `speakers` and `speaker_turns` are all relabelled, so every format rendered
    from the copy carries the names.

    Raises:
        ValueError: a label in `names` is not one of the transcript's speakers, or two speakers
            would end up with the same name (a new name equal to another speaker's kept label too).
    """
    if not names:
        return t
    labels = {s.id for s in t.speakers} | {s.speaker for s in t.segments if s.speaker is not None}
    unknown = sorted(set(names) - labels)
    if unknown:
        raise ValueError(f"speaker {unknown[0][:40]!r} is not in this transcript (its speakers: {sorted(labels)})")
    final = [names.get(label, label) for label in labels]
    if len(set(final)) != len(final):
        raise ValueError("two speakers cannot share a name")
    out = t.model_copy(deep=True)
    for seg in out.segments:
        if seg.speaker is not None:
            seg.speaker = names.get(seg.speaker, seg.speaker)
        for w in seg.words:
            if w.speaker is not None:
                w.speaker = names.get(w.speaker, w.speaker)
    for info in out.speakers:
        info.id = names.get(info.id, info.id)
    for turn in out.speaker_turns:
        turn.speaker = names.get(turn.speaker, turn.speaker)
    return out
