"""Typed objects mirroring the service's JSON: jobs, events and transcripts.

Plain frozen dataclasses parsed from the API's JSON (`from_json`); fields the service adds later
are ignored, so an older client reads a newer service. Every time is in seconds from the start
of the audio unless the field is a `datetime`. Each object keeps the JSON it came from in `raw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from whisperx_client.errors import ProtocolError

#: Job statuses after which a job never changes.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
#: Event types that end a job's event stream (exactly one comes, last).
TERMINAL_EVENTS = TERMINAL_STATUSES
#: Pipeline stages in order (the `stage` of a job and of a `progress` event).
STAGES = ("decode", "transcribe", "align", "diarize", "merge")
#: Result formats of `GET /v1/jobs/{id}/result`.
FORMATS = ("json", "srt", "vtt", "txt", "tsv")


def _obj(data: Any, what: str) -> dict[str, Any]:
    """`data` as a JSON object, else ProtocolError naming `what`."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _req(data: dict[str, Any], key: str, what: str) -> Any:
    """`data[key]`, else ProtocolError naming `what`."""
    if key not in data or data[key] is None:
        raise ProtocolError(f"{what}: missing field {key!r}")
    return data[key]


def _float(value: Any, what: str) -> float:
    """A JSON number (or numeric string) as float, else ProtocolError."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{what}: {value!r} is not a number") from None


def _opt_float(value: Any, what: str) -> float | None:
    return None if value is None or value == "" else _float(value, what)


def _time(value: Any, what: str) -> datetime | None:
    """An ISO 8601 timestamp (None stays None), else ProtocolError."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ProtocolError(f"{what}: {value!r} is not an ISO 8601 time") from None


@dataclass(frozen=True)
class Word:
    """One word: `start`/`end` in seconds, alignment `score` 0-1 (None when not aligned)."""

    word: str
    start: float
    end: float
    score: float | None = None
    speaker: str | None = None
    aligned: bool = True

    @classmethod
    def from_json(cls, data: Any) -> Word:
        """Parse a result word. Raises ProtocolError when a required field is missing or not a number."""
        d = _obj(data, "word")
        return cls(
            word=str(_req(d, "word", "word")),
            start=_float(_req(d, "start", "word"), "word.start"),
            end=_float(_req(d, "end", "word"), "word.end"),
            score=_opt_float(d.get("score"), "word.score"),
            speaker=d.get("speaker"),
            aligned=bool(d.get("aligned", True)),
        )


@dataclass(frozen=True)
class Segment:
    """A run of words from one speaker (`start`/`end` in seconds); never crosses a speaker change."""

    id: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    words: tuple[Word, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Segment:
        """Parse a result segment. Raises ProtocolError on a missing or malformed field."""
        d = _obj(data, "segment")
        return cls(
            id=int(_float(d.get("id", 0), "segment.id")),
            start=_float(_req(d, "start", "segment"), "segment.start"),
            end=_float(_req(d, "end", "segment"), "segment.end"),
            text=str(d.get("text", "")),
            speaker=d.get("speaker"),
            words=tuple(Word.from_json(w) for w in d.get("words") or ()),
        )


@dataclass(frozen=True)
class Speaker:
    """One speaker of the result: its label (`SPEAKER_00`) and total talk time in seconds."""

    id: str
    talk_time_s: float

    @classmethod
    def from_json(cls, data: Any) -> Speaker:
        """Parse a result speaker. Raises ProtocolError on a missing or malformed field."""
        d = _obj(data, "speaker")
        return cls(id=str(_req(d, "id", "speaker")), talk_time_s=_float(d.get("talk_time_s", 0.0), "talk_time_s"))


@dataclass(frozen=True)
class SpeakerTurn:
    """A diarization turn: `speaker` talks from `start` to `end` (seconds)."""

    start: float
    end: float
    speaker: str

    @classmethod
    def from_json(cls, data: Any) -> SpeakerTurn:
        """Parse a speaker turn. Raises ProtocolError on a missing or malformed field."""
        d = _obj(data, "speaker turn")
        return cls(
            start=_float(_req(d, "start", "speaker turn"), "turn.start"),
            end=_float(_req(d, "end", "speaker turn"), "turn.end"),
            speaker=str(_req(d, "speaker", "speaker turn")),
        )


@dataclass(frozen=True)
class Transcript:
    """The result of a succeeded job (`GET /v1/jobs/{id}/result?format=json`).

    Attributes:
        language: ISO 639-1 code of the speech.
        language_probability: the detector's confidence 0-1, None when the language was given.
        duration: audio duration in seconds.
        segments: in time order.
        speakers: each speaker with its talk time; empty without diarization.
        speaker_turns: who spoke when (labels as in segments).
        chunks: how many overlapping chunks the audio was processed in.
        models: stage -> model name.
        timings: stage -> wall seconds.
        raw: the JSON object as the service sent it.
    """

    language: str
    language_probability: float | None
    duration: float
    segments: tuple[Segment, ...]
    speakers: tuple[Speaker, ...] = ()
    speaker_turns: tuple[SpeakerTurn, ...] = ()
    chunks: int = 1
    models: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Transcript:
        """Parse the result JSON. Raises ProtocolError on a missing or malformed field."""
        d = _obj(data, "transcript")
        return cls(
            language=str(_req(d, "language", "transcript")),
            language_probability=_opt_float(d.get("language_probability"), "language_probability"),
            duration=_float(_req(d, "duration", "transcript"), "duration"),
            segments=tuple(Segment.from_json(s) for s in _req(d, "segments", "transcript")),
            speakers=tuple(Speaker.from_json(s) for s in d.get("speakers") or ()),
            speaker_turns=tuple(SpeakerTurn.from_json(t) for t in d.get("speaker_turns") or ()),
            chunks=int(_float(d.get("chunks", 1), "chunks")),
            models={str(k): str(v) for k, v in (d.get("models") or {}).items()},
            timings={str(k): _float(v, "timings") for k, v in (d.get("timings") or {}).items()},
            raw=d,
        )

    @property
    def text(self) -> str:
        """The segments' texts joined by single spaces."""
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def words(self) -> list[Word]:
        """Every word in time order."""
        return [w for s in self.segments for w in s.words]


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the stable `code` (e.g. `audio_decode_failed`) and a human message."""

    code: str
    message: str


@dataclass(frozen=True)
class Job:
    """A job's status (`GET /v1/jobs/{id}`, and the items of `GET /v1/jobs`).

    Attributes:
        status: `queued`, `running`, `succeeded`, `failed` or `cancelled`.
        stage: the pipeline stage (`STAGES`) while running, else None or the last one.
        percent: overall progress 0-100; never decreases.
        attempt: how many times a worker has claimed the job.
        duration_s: audio duration in seconds, once known.
        size_bytes: size of the uploaded file in bytes.
        options: the job options as the service recorded them.
        owner: `{id, name}` of the key that created it (None with auth off).
        raw: the JSON object as the service sent it.
    """

    id: str
    status: str
    stage: str | None
    percent: float
    attempt: int
    created_at: datetime | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    filename: str | None = None
    size_bytes: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    error: JobError | None = None
    cancel_requested: bool = False
    owner: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Job:
        """Parse a job record. Raises ProtocolError on a missing or malformed field."""
        d = _obj(data, "job")
        err = d.get("error")
        size = d.get("size_bytes")
        return cls(
            id=str(_req(d, "id", "job")),
            status=str(_req(d, "status", "job")),
            stage=d.get("stage"),
            percent=_float(d.get("percent", 0.0), "percent"),
            attempt=int(_float(d.get("attempt", 0), "attempt")),
            created_at=_time(d.get("created_at"), "created_at"),
            started_at=_time(d.get("started_at"), "started_at"),
            finished_at=_time(d.get("finished_at"), "finished_at"),
            duration_s=_opt_float(d.get("duration_s"), "duration_s"),
            filename=d.get("filename"),
            size_bytes=None if size is None else int(_float(size, "size_bytes")),
            options=dict(d.get("options") or {}),
            error=JobError(str(err.get("code", "")), str(err.get("message", ""))) if isinstance(err, dict) else None,
            cancel_requested=bool(d.get("cancel_requested", False)),
            owner=d.get("owner"),
            raw=d,
        )

    @property
    def terminal(self) -> bool:
        """True once the job ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Accepted:
    """The answer to a submitted job (202): its id and where to watch and fetch it."""

    id: str
    status: str
    status_url: str
    events_url: str
    result_url: str

    @classmethod
    def from_json(cls, data: Any) -> Accepted:
        """Parse a 202 body. Raises ProtocolError on a missing field."""
        d = _obj(data, "accepted job")
        return cls(
            id=str(_req(d, "id", "accepted job")),
            status=str(d.get("status", "queued")),
            status_url=str(d.get("status_url", "")),
            events_url=str(d.get("events_url", "")),
            result_url=str(d.get("result_url", "")),
        )


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job's stream.

    Attributes:
        id: the SSE id (a Redis stream id `<ms>-<seq>`; `0-0` for the snapshot).
        type: `snapshot` (the job record, first on a fresh stream), `queued`, `started`,
            `progress`, `released`, `cancelling`, `restored`, or a terminal `succeeded`, `failed`,
            `cancelled`.
        data: the event's JSON object (for `snapshot`, the job record; for `progress`, `stage`,
            `stage_percent`, `percent`, `chunk`, `chunks`, `eta_s` seconds; for `failed`,
            `code` and `message`).
    """

    id: str | None
    type: str
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """True for the one event that ends the stream."""
        return self.type in TERMINAL_EVENTS

    @property
    def stage(self) -> str | None:
        """The stage this event reports, if any."""
        stage = self.data.get("stage")
        return str(stage) if stage else None

    @property
    def percent(self) -> float | None:
        """The job's percent (0-100) this event reports, if any."""
        value = self.data.get("percent")
        try:
            return None if value is None or value == "" else float(value)
        except (TypeError, ValueError):
            return None

    @property
    def eta_s(self) -> float | None:
        """Seconds left as the worker estimates them (progress events), if known."""
        value = self.data.get("eta_s")
        try:
            return None if value is None or value == "" else float(value)
        except (TypeError, ValueError):
            return None
