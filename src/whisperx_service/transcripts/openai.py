"""A `Transcript` in the shapes of OpenAI's audio API (`/v1/audio/transcriptions`, `/translations`).

Pure Python, no I/O. The shapes follow OpenAI's API reference and the types of its Python SDK
(`openai.types.audio`: `Transcription`, `TranscriptionVerbose`, `TranscriptionDiarized`, the
`transcript.text.*` stream events):

- `json`: `{text, usage: {type: "duration", seconds}}`.
- `verbose_json`: `{task, language, duration, text, segments, words, usage}`. `language` is the
  language's English name in lower case, as OpenAI gives it (`english`; openai-whisper's
  `tokenizer.LANGUAGES`, which WhisperX copies as `whisperx.utils.LANGUAGES`); a translation's is
  `english`. Each segment has OpenAI's fields: `id`, `seek` (the 30 s window the segment starts
  in, in 10 ms mel frames, as openai-whisper counts it: `floor(start / 30) * 3000`), `start`,
  `end`, `text` (with the leading space Whisper's text has), `tokens` (`[]`: WhisperX does not
  return token ids), `temperature` (the request's, default 0.0: WhisperX decodes with its configured
  temperatures and does not say which one a segment used), `avg_logprob` (0.0) and
  `no_speech_prob` (0.0): WhisperX's batched pipeline computes neither, `compression_ratio`
  (computed from the text as openai-whisper does: UTF-8 bytes over zlib-compressed bytes,
  `whisper.utils.compression_ratio`), and `speaker` as an extra field. `segments` is given when
  the `segment` granularity was asked (the default), `words` (`{word, start, end}` plus `speaker`
  and `score` as extra fields) only when `word` was, as OpenAI does.
- `diarized_json`: `{task, duration, text, segments: [{type: "transcript.text.segment", id,
  start, end, text, speaker}], usage}`; speakers keep this service's labels (`SPEAKER_00`, ...),
  a segment no speaker was found for is `unknown`.
- `text`: the text and a newline; `srt`, `vtt`: `transcripts.formats` (speakers prefixed when
  diarized).

`usage.seconds` is the audio's duration (s, rounded to ms). The full text joins the segments'
texts with the language's word separator (`transcripts.text.word_separator`).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Literal

from whisperx_service.domain.transcript import Transcript
from whisperx_service.transcripts.formats import render
from whisperx_service.transcripts.text import word_separator

Task = Literal["transcribe", "translate"]

#: The response formats of OpenAI's transcription endpoint (translations: all but diarized_json).
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
#: Media type of each non-JSON response format.
TEXT_MEDIA_TYPES: dict[str, str] = {
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
#: Speaker of a diarized segment no speaker was found for (OpenAI's type requires a string).
UNKNOWN_SPEAKER = "unknown"
#: Frames per second of Whisper's log-mel input (openai-whisper `audio.HOP_LENGTH` 160 at 16 kHz).
MEL_FRAMES_PER_S = 100
#: Seconds of one Whisper window (openai-whisper `audio.CHUNK_LENGTH`).
WINDOW_S = 30

#: ISO 639-1 code -> lower-case English name, openai-whisper's `tokenizer.LANGUAGES` (as WhisperX copies it).
LANGUAGE_NAMES: dict[str, str] = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


def compression_ratio(text: str) -> float:
    """UTF-8 bytes of `text` over its zlib-compressed bytes (openai-whisper `utils.compression_ratio`);
    0.0 for empty text. Whisper treats a segment above 2.4 as a failed (repetitive) decode."""
    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def full_text(t: Transcript) -> str:
    """The whole transcript as one string: segment texts joined by the language's word separator."""
    sep = word_separator(t.language)
    return sep.join(s.text.strip() for s in t.segments if s.text.strip())


def usage(t: Transcript) -> dict[str, Any]:
    """OpenAI's duration usage: `{type: "duration", seconds}` (the audio's seconds, ms precision)."""
    return {"type": "duration", "seconds": round(t.duration, 3)}


def language_name(code: str, task: Task) -> str:
    """OpenAI's `language` of a verbose response: the English name, `english` for a translation,
    the code itself when the table does not know it."""
    return "english" if task == "translate" else LANGUAGE_NAMES.get(code, code)


def verbose_json(
    t: Transcript, *, task: Task, granularities: frozenset[str], temperature: float = 0.0
) -> dict[str, Any]:
    """The `verbose_json` body (see the module docstring for each field's source).

    Args:
        granularities: a subset of {"segment", "word"}: which lists the body carries.
        temperature: the request's temperature, echoed in each segment.
    """
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(t.language, task),
        "duration": round(t.duration, 3),
        "text": full_text(t),
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": math.floor(s.start / WINDOW_S) * WINDOW_S * MEL_FRAMES_PER_S,
                "start": s.start,
                "end": s.end,
                "text": " " + s.text.strip() if word_separator(t.language) else s.text.strip(),
                "tokens": [],
                "temperature": temperature,
                "avg_logprob": 0.0,
                "compression_ratio": round(compression_ratio(s.text.strip()), 4),
                "no_speech_prob": 0.0,
                "speaker": s.speaker,
            }
            for s in t.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word, "start": w.start, "end": w.end, "speaker": w.speaker, "score": w.score} for w in t.words()
        ]
    body["usage"] = usage(t)
    return body


def diarized_segments(t: Transcript) -> list[dict[str, Any]]:
    """The segments of `diarized_json` (and the stream's `transcript.text.segment` events)."""
    return [
        {
            "type": "transcript.text.segment",
            "id": f"seg_{s.id}",
            "start": s.start,
            "end": s.end,
            "text": s.text.strip(),
            "speaker": s.speaker or UNKNOWN_SPEAKER,
        }
        for s in t.segments
        if s.text.strip()
    ]


def render_openai(
    t: Transcript,
    response_format: str,
    *,
    task: Task,
    granularities: frozenset[str] = frozenset({"segment"}),
    temperature: float = 0.0,
) -> tuple[dict[str, Any] | str, str]:
    """The response body in `response_format`.

    Returns:
        `(body, media_type)`: a dict for the JSON formats (`application/json`), a str for text, srt
        and vtt (`TEXT_MEDIA_TYPES`).
    Raises:
        ValueError: `response_format` is not one of `RESPONSE_FORMATS`.
    """
    if response_format == "json":
        return {"text": full_text(t), "usage": usage(t)}, "application/json"
    if response_format == "verbose_json":
        return verbose_json(t, task=task, granularities=granularities, temperature=temperature), "application/json"
    if response_format == "diarized_json":
        body = {
            "task": task,
            "duration": round(t.duration, 3),
            "text": full_text(t),
            "segments": diarized_segments(t),
            "usage": usage(t),
        }
        return body, "application/json"
    if response_format == "text":
        return full_text(t) + "\n", TEXT_MEDIA_TYPES["text"]
    if response_format in ("srt", "vtt"):
        return render(t, response_format)[0].decode("utf-8"), TEXT_MEDIA_TYPES[response_format]
    raise ValueError(f"unknown response_format {response_format!r}")


def stream_events(t: Transcript, *, diarized: bool) -> list[dict[str, Any]]:
    """The `stream=true` events of a finished transcript, in order.

    One `transcript.text.delta` per segment (its text, with the word separator before every segment
    but the first, so the deltas joined are the done event's text; `segment_id` when diarized), a
    `transcript.text.segment` after each delta when diarized, and one `transcript.text.done` with
    the full text and the usage. The usage is the duration shape of the other answers (OpenAI's
    type for this event names the token usage of its gpt-4o models, which Whisper has not).
    """
    events: list[dict[str, Any]] = []
    sep = word_separator(t.language)
    first = True
    for seg in t.segments:
        text = seg.text.strip()
        if not text:
            continue
        delta: dict[str, Any] = {"type": "transcript.text.delta", "delta": text if first else sep + text}
        first = False
        if diarized:
            delta["segment_id"] = f"seg_{seg.id}"
        events.append(delta)
        if diarized:
            events.append(
                {
                    "type": "transcript.text.segment",
                    "id": f"seg_{seg.id}",
                    "start": seg.start,
                    "end": seg.end,
                    "text": text,
                    "speaker": seg.speaker or UNKNOWN_SPEAKER,
                }
            )
    events.append({"type": "transcript.text.done", "text": full_text(t), "usage": usage(t)})
    return events


class LiveDeltas:
    """`transcript.text.delta` events sent while the job runs, from the text the worker says is final.

    The worker publishes, on a progress event, the text of chunk k once it is final
    (`final_chunk` = k, `final_text`, `language`; `pipeline/post/partial.py`). `feed` turns those into
    deltas, in chunk order: a repeat (a rerun that reused the checkpoints) is skipped, and a gap
    (the stream was trimmed) stops the live deltas for good. `finish` then ends the stream from the
    transcript: the rest of the text as one delta, so the deltas joined are the done event's text;
    where no live delta was sent, the per-segment deltas of `stream_events`.
    """

    def __init__(self) -> None:
        self.sent = ""  # the deltas joined so far
        self.next_chunk = 0
        self.broken = False

    def feed(self, fields: dict[str, str]) -> dict[str, Any] | None:
        """The delta for a stored event's fields, or None (not a final-text event, a repeat, empty, or after a gap)."""
        raw = fields.get("final_chunk")
        if raw is None or self.broken:
            return None
        try:
            k = int(raw)
        except ValueError:
            return None
        if k < self.next_chunk:
            return None
        if k > self.next_chunk:
            self.broken = True
            return None
        self.next_chunk += 1
        text = fields.get("final_text", "").strip()
        if not text:
            return None
        delta = text if not self.sent else word_separator(fields.get("language")) + text
        self.sent += delta
        return {"type": "transcript.text.delta", "delta": delta}

    def finish(self, t: Transcript, *, diarized: bool) -> tuple[list[dict[str, Any]], bool]:
        """The events that end the stream, and whether the deltas joined equal the done text.

        False when the live deltas are not a prefix of the final text (a word's spacing that the
        final segmentation changed); the done event still carries the whole text.
        """
        if not self.sent:
            return stream_events(t, diarized=diarized), True
        text = full_text(t)
        events: list[dict[str, Any]] = []
        ok = text.startswith(self.sent)
        if ok and len(text) > len(self.sent):
            events.append({"type": "transcript.text.delta", "delta": text[len(self.sent) :]})
        if diarized:
            events += [e for e in stream_events(t, diarized=True) if e["type"] == "transcript.text.segment"]
        events.append({"type": "transcript.text.done", "text": text, "usage": usage(t)})
        return events, ok
