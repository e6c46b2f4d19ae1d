"""The transcript a job produces (`result.json`); every time is in seconds from the audio's start."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Word(BaseModel):
    """One word with its time span.

    `word` in a result has no surrounding whitespace. Inside the pipeline (chunk checkpoints,
    merge) it starts with the text that precedes the word in WhisperX's segment text (normally
    one space, "" where there is none), so words concatenate back to WhisperX's text; segments
    are built from that and strip it (`post.segments.build_segments`).
    """

    word: str
    start: float = Field(description="Seconds")
    end: float = Field(description="Seconds; >= start")
    score: float | None = Field(None, description="Alignment confidence 0-1; None when not aligned")
    speaker: str | None = None
    aligned: bool = Field(True, description="False: the aligner gave no time, start/end are interpolated")


class Segment(BaseModel):
    """A run of words from one speaker; never straddles a speaker change."""

    id: int
    start: float
    end: float
    text: str
    speaker: str | None = None
    words: list[Word] = Field(default_factory=list)


class SpeakerTurn(BaseModel):
    """A diarization turn: `speaker` talks from `start` to `end` (seconds)."""

    start: float
    end: float
    speaker: str


class SpeakerInfo(BaseModel):
    """One speaker in the result."""

    id: str
    talk_time_s: float = Field(description="Total seconds of diarization turns of this speaker")


class Transcript(BaseModel):
    """The whole result of a job."""

    language: str
    language_probability: float | None = None
    duration: float = Field(description="Audio duration in seconds")
    segments: list[Segment]
    speakers: list[SpeakerInfo] = Field(default_factory=list)
    speaker_turns: list[SpeakerTurn] = Field(
        default_factory=list, description="Who spoke when, from diarization (labels as in segments)"
    )
    chunks: int = Field(1, description="How many overlapping chunks the audio was processed in")
    models: dict[str, str] = Field(default_factory=dict, description="Stage -> model name or path used")
    timings: dict[str, float] = Field(default_factory=dict, description="Stage -> wall seconds")
    models_loaded: list[str] = Field(
        default_factory=list, description="Models this job had to load (empty when the worker had them all)"
    )

    def words(self) -> list[Word]:
        """All words in time order."""
        return [w for s in self.segments for w in s.words]
