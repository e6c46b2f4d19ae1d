"""The multipart form of OpenAI's `/v1/audio/transcriptions` and `/v1/audio/translations`, as the
official `openai` client sends it, mapped onto `JobOptions`.

Fields (OpenAI's, plus WhisperX's as extra fields; arrays come as `x[]` or `x`, repeated):

- `model`: any string (at most `MAX_MODEL_CHARS`). Jobs have no per-job model choice: every name,
  `whisper-1` included, runs the workers' configured ASR model (`GET /v1/models` lists it).
- `language` -> `JobOptions.language`; `languages[]`: one value is taken as `language`, more are
  accepted and ignored (the language is then detected).
- `prompt` -> `initial_prompt`; `keywords[]` (and `hotwords`) -> `hotwords`, joined by spaces.
- `temperature`: a number in [0, 1], checked and echoed in verbose segments; WhisperX decodes with
  its configured temperature fallback.
- `response_format`: json (default), text, srt, vtt, verbose_json, diarized_json (transcriptions).
- `timestamp_granularities[]`: `segment` (default) and/or `word`.
- `stream`: true/false. `chunking_strategy` (a string or `chunking_strategy[...]` fields) and
  `include[]` are accepted and ignored (the service always chunks long audio on VAD silences).
- `known_speaker_names[]`, `known_speaker_references[]`: 400 `unsupported`.
- `diarize` (default: true for `diarized_json` or a model name containing `diarize`, else false),
  `num_speakers`, `min_speakers`, `max_speakers`, `align` (default true; false for translations,
  whose English words are not in the audio), `webhook_url`, `webhook_events`: the job options of
  the same names.

Every bad value is 400 `invalid_parameter` naming the parameter (OpenAI's clients expect 400).
The fields in `ANSWER_ONLY` do not count for an Idempotency-Key: a repeat may ask for the same
job in another format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from whisperx_service.api.multipart_form import FormSpec
from whisperx_service.domain.jobs import JobOptions
from whisperx_service.errors import InvalidParameter, Unsupported
from whisperx_service.transcripts.openai import RESPONSE_FORMATS, Task

#: Longest `model` value (characters).
MAX_MODEL_CHARS = 256
#: Timestamp granularities OpenAI defines.
GRANULARITIES = frozenset({"word", "segment"})
#: Most field parts one request may carry.
MAX_FIELDS = 64
_SINGLE = frozenset(
    {
        "model",
        "language",
        "prompt",
        "temperature",
        "response_format",
        "stream",
        "chunking_strategy",
        "timestamp_granularities",
        "hotwords",
        "diarize",
        "num_speakers",
        "min_speakers",
        "max_speakers",
        "align",
        "webhook_url",
        "webhook_events",
    }
)
_ARRAYS = ("timestamp_granularities", "include", "keywords", "languages", "known_speaker_names",
           "known_speaker_references")  # fmt: skip
_REPEATABLE = frozenset(f"{name}[]" for name in _ARRAYS) | frozenset(
    {"include", "keywords", "languages", "known_speaker_names", "known_speaker_references"}
)
#: Fields that shape only the answer: a repeat with the same Idempotency-Key may change them and
#: gets the same job in another shape.
ANSWER_ONLY = frozenset(
    {"response_format", "timestamp_granularities", "timestamp_granularities[]", "stream", "temperature",
     "include", "include[]"}
)  # fmt: skip
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True, slots=True)
class OpenAIRequest:
    """One OpenAI-compatible request: what the job runs and how the answer is shaped."""

    task: Task
    model: str
    options: JobOptions
    response_format: str
    granularities: frozenset[str]
    stream: bool
    temperature: float

    @property
    def diarized(self) -> bool:
        """True when the job labels speakers (segments and stream events carry them)."""
        return self.options.diarize


def _bool(value: str, param: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidParameter(f"{param} must be true or false", param=param)


def _array(fields: Mapping[str, str], multi: Mapping[str, list[str]], name: str) -> list[str]:
    """Every value of an array parameter, however it was sent (`x[]`, repeated `x`, or a single `x`)."""
    out = list(multi.get(f"{name}[]", [])) + list(multi.get(name, []))
    if name in fields:
        out.append(fields[name])
    return [v.strip() for v in out if v.strip()]


def parse_openai(fields: Mapping[str, str], multi: Mapping[str, list[str]], task: Task) -> OpenAIRequest:
    """Validate the form and map it onto the job's options (see the module docstring).

    Raises:
        InvalidParameter: a value is malformed or values contradict each other.
        Unsupported: `known_speaker_names[]` or `known_speaker_references[]` was sent.
    """
    for name in ("known_speaker_names", "known_speaker_references"):
        if _array(fields, multi, name):
            raise Unsupported(f"{name}[] is not supported: speakers are labelled SPEAKER_00, ...", param=name)
    model = fields.get("model", "").strip()
    if len(model) > MAX_MODEL_CHARS:
        raise InvalidParameter(f"model is longer than {MAX_MODEL_CHARS} characters", param="model")
    response_format = fields.get("response_format", "").strip() or "json"
    allowed = RESPONSE_FORMATS if task == "transcribe" else tuple(f for f in RESPONSE_FORMATS if f != "diarized_json")
    if response_format not in allowed:
        raise InvalidParameter(
            f"response_format {response_format[:32]!r} is not one of {', '.join(allowed)}", param="response_format"
        )
    granularities = frozenset(_array(fields, multi, "timestamp_granularities")) or frozenset({"segment"})
    if not granularities <= GRANULARITIES:
        bad = sorted(granularities - GRANULARITIES)[0]
        raise InvalidParameter(
            f"timestamp_granularities[] {bad[:32]!r} is not one of word, segment", param="timestamp_granularities"
        )
    temperature = 0.0
    if fields.get("temperature", "").strip():
        try:
            temperature = float(fields["temperature"])
        except ValueError:
            raise InvalidParameter("temperature must be a number from 0 to 1", param="temperature") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidParameter("temperature must be a number from 0 to 1", param="temperature")
    stream = _bool(fields["stream"], "stream") if fields.get("stream", "").strip() else False
    wants_speakers = response_format == "diarized_json" or "diarize" in model.lower()
    diarize = _bool(fields["diarize"], "diarize") if fields.get("diarize", "").strip() else wants_speakers
    if response_format == "diarized_json" and not diarize:
        raise InvalidParameter("response_format diarized_json needs diarize=true", param="diarize")
    align = _bool(fields["align"], "align") if fields.get("align", "").strip() else task == "transcribe"
    language = fields.get("language", "").strip() or None
    languages = _array(fields, multi, "languages")
    if language is None and len(languages) == 1:
        language = languages[0]
    hotwords = " ".join([*_array(fields, multi, "keywords"), fields.get("hotwords", "").strip()]).strip() or None
    raw: dict[str, Any] = {
        "language": language,
        "initial_prompt": fields.get("prompt", "").strip() or None,
        "hotwords": hotwords,
        "diarize": diarize,
        "align": align,
        "task": task,
    }
    for name in ("num_speakers", "min_speakers", "max_speakers", "webhook_url", "webhook_events"):
        if fields.get(name, "").strip():
            raw[name] = fields[name].strip()
    try:
        options = JobOptions.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        param = str(err["loc"][0]) if err["loc"] else None
        if param == "initial_prompt":
            param = "prompt"
        where = f"{param}: " if param else ""
        raise InvalidParameter(f"{where}{err['msg']}", param=param) from None
    return OpenAIRequest(task, model, options, response_format, granularities, stream, temperature)


def openai_form(task: Task) -> FormSpec[OpenAIRequest]:
    """The form of `/v1/audio/transcriptions` (`transcribe`) or `/v1/audio/translations` (`translate`)."""

    def parse(fields: Mapping[str, str], multi: Mapping[str, list[str]]) -> OpenAIRequest:
        return parse_openai(fields, multi, task)

    return FormSpec(
        names=_SINGLE,
        parse=parse,
        repeatable=_REPEATABLE,
        prefixes=("chunking_strategy[",),
        max_fields=MAX_FIELDS,
        answer_only=ANSWER_ONLY,
    )


TRANSCRIBE_FORM = openai_form("transcribe")
TRANSLATE_FORM = openai_form("translate")
