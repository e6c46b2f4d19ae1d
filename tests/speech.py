"""Test audio made on the fly: espeak-ng voices with exact turn times, and the pyannote sample.

Nothing here is committed audio: files are synthesised (espeak-ng + sox) into temp directories.
"""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import pyannote.audio

SR = 16_000
SAMPLE_DIR = Path(pyannote.audio.__file__).parent / "sample"
#: A real two-speaker phone call (30 s) shipped in pyannote.audio, with RTTM and STM references.
SAMPLE_WAV = SAMPLE_DIR / "sample.wav"
SAMPLE_RTTM = SAMPLE_DIR / "sample.rttm"
SAMPLE_STM = SAMPLE_DIR / "sample.stm"

#: Two espeak-ng voices that sound clearly different (voice variant and pitch).
VOICES = {"A": ("en-us", "35"), "B": ("en-us+f3", "70"), "C": ("en-gb+m3", "50")}

CONVERSATION = [
    ("A", "Good morning. Did you manage to finish the quarterly report before the deadline yesterday?"),
    ("B", "Almost. I still need the sales numbers from the northern region, but everything else is done."),
    ("A", "I can send those to you this afternoon. Are the charts ready for the presentation?"),
    ("B", "Yes, the charts are ready. I made three new slides that compare this year with last year."),
    ("A", "That sounds great. Let us meet on Thursday at ten to review the whole document together."),
    ("B", "Thursday works for me. I will book the small meeting room on the second floor."),
    (
        "A",
        "Perfect. Please also invite Maria from the finance team, because she has questions about the budget.",
    ),
    ("B", "Of course. I will send her an invitation right after lunch, and I will attach the draft."),
]


@dataclass(frozen=True)
class Turn:
    """Ground truth: `speaker` says `text` from `start` to `end` (seconds)."""

    speaker: str
    start: float
    end: float
    text: str


def synth(text: str, speaker: str, out: Path) -> bytes:
    """16 kHz mono int16 PCM of `text` in `speaker`'s voice, leading/trailing silence trimmed."""
    voice, pitch = VOICES[speaker]
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-p", pitch, "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(SR), "-c", "1", "-b", "16", str(out),
         "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"],
        check=True,
    )  # fmt: skip
    with wave.open(str(out)) as w:
        return w.readframes(w.getnframes())


def make_conversation(
    directory: Path, turns: list[tuple[str, str]] = CONVERSATION, pause_s: float = 0.6
) -> tuple[Path, list[Turn]]:
    """Write `conversation.wav` (16 kHz mono) of the turns with `pause_s` between them.

    Returns:
        (wav path, ground-truth turns with exact start/end seconds).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pcm = b""
    gt: list[Turn] = []
    for i, (spk, text) in enumerate(turns):
        data = synth(text, spk, directory / f"part{i}.wav")
        if i:
            pcm += b"\x00\x00" * int(pause_s * SR)
        start = len(pcm) / 2 / SR
        pcm += data
        gt.append(Turn(spk, round(start, 3), round(len(pcm) / 2 / SR, 3), text))
    path = directory / "conversation.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm)
    return path, gt


def read_stm(path: Path = SAMPLE_STM) -> list[Turn]:
    """Turns of an STM file (`file channel speaker start end text...`)."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and not line.startswith(";;"):
            out.append(Turn(parts[2], float(parts[3]), float(parts[4]), parts[5]))
    return out


def read_rttm(path: Path = SAMPLE_RTTM) -> list[Turn]:
    """Speaker turns of an RTTM file (text empty)."""
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        if f and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            out.append(Turn(f[7], start, start + dur, ""))
    return out


_SUBJECTS = ["the budget", "the new office", "our hiring plan", "the spring release", "the customer survey",
             "the server migration", "the training course", "the annual report", "the design review",
             "the holiday schedule", "the travel policy", "the marketing campaign"]  # fmt: skip
_VERBS = ["finish", "approve", "discuss", "present", "change", "check", "postpone", "announce"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
_PLACES = ["Berlin", "Chicago", "Lisbon", "Toronto", "Madrid", "Denver", "Oslo", "Dublin"]


def long_script(turns: int, seed: int = 7) -> list[tuple[str, str]]:
    """A conversation of `turns` distinct sentences; voices A and B alternate, with runs of two.

    Deterministic for a seed. Each sentence names a subject, a day, a city and a number, so
    sentences differ and word n-grams at chunk seams are easy to check.
    """
    import random

    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    speaker = "A"
    for i in range(turns):
        subj, verb, day, place = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_DAYS), rng.choice(_PLACES)
        n = rng.randint(3, 95)
        text = rng.choice([
            f"We should {verb} {subj} on {day}, because the team in {place} needs {n} more days.",
            f"I think {subj} is ready, but {place} asked us to {verb} it before {day}.",
            f"On {day} I will {verb} {subj} with the people from {place}, about {n} of them.",
            f"Can you {verb} {subj} for {place} by {day}? They sent {n} questions already.",
        ])  # fmt: skip
        out.append((speaker, text))
        if rng.random() < 0.7 or (i > 0 and out[i - 1][0] == speaker):
            speaker = "B" if speaker == "A" else "A"
    return out
