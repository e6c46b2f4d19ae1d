"""Stages as services end to end: a real gateway and worker on the espeak-ng conversation.

Four jobs share one service: a full job (the reference), a diarize-only job, an align job of the
conversation's own script (plain text), and a re-diarization of the full job. Then
`GET /v1/languages` of the worker's model (the CPU `tiny.en`: English only, aligned by Whisper's
attention).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.metrics import der
from tests.speech import Turn, make_conversation
from tests.sse import SseEvent

#: DER of the diarize-only job may exceed the full job's by at most this (the task's bound).
DER_SLACK = 0.02
#: An aligned turn's first word starts, and its last word ends, within this of the synthesis
#: truth (s): the turn edges are exact (the speech is written sample by sample, tests/speech.py).
EDGE_TOLERANCE_S = 0.3


class Run:
    """A job's SSE stream read to its end, its final status and JSON result."""

    def __init__(self, svc: Service, job_id: str) -> None:
        self.id = job_id
        self.events: list[SseEvent] = svc.events(job_id)
        self.status = svc.wait(job_id, 60)
        r = svc.result(job_id)
        self.result: dict[str, Any] = r.json() if r.status_code == 200 else {}

    def stages(self) -> list[str]:
        """The stages of its progress events, in the order first seen."""
        return list(dict.fromkeys(str(e.data["stage"]) for e in self.events if e.event == "progress"))

    def turns(self) -> list[tuple[float, float, str]]:
        return [(t["start"], t["end"], t["speaker"]) for t in self.result["speaker_turns"]]

    def words(self) -> list[dict[str, Any]]:
        return [w for s in self.result["segments"] for w in s["words"]]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    service = start_service(tmp_path_factory.mktemp("stages"), redis_url, models_dir, REDIS_URL=redis_url)
    yield service
    stop_service(service)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Turn]]:
    return make_conversation(tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def runs(svc: Service, conversation: tuple[Path, list[Turn]]) -> dict[str, Run]:
    """Every job of the module: submitted together, read concurrently (one worker runs them in turn)."""
    path, truth = conversation
    script = " ".join(t.text for t in truth)
    ids = {
        "full": svc.submit(path, num_speakers=2, language="en")["id"],
        "diarize": svc.submit(path, task="diarize", num_speakers=2)["id"],
        "align": svc.submit(path, task="align", transcript=script, diarize=False, language="en")["id"],
    }
    out: dict[str, Run] = {}

    def read(name: str) -> None:
        out[name] = Run(svc, ids[name])

    threads = [threading.Thread(target=read, args=(n,)) for n in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    assert out["full"].status["status"] == "succeeded", out["full"].status
    with svc.client() as c:
        r = c.post(f"/v1/jobs/{ids['full']}/rediarize", json={"min_speakers": 2, "max_speakers": 3})
    assert r.status_code == 202, r.text
    out["rediarize"] = Run(svc, r.json()["id"])
    return out


def test_diarize_only_matches_the_full_jobs_der_without_asr(
    runs: dict[str, Run], conversation: tuple[Path, list[Turn]], svc: Service
) -> None:
    full, only = runs["full"], runs["diarize"]
    assert only.status["status"] == "succeeded", only.status
    assert only.stages() == ["decode", "vad", "diarize", "merge"]
    truth = conversation[1]
    d_full, d_only = der(truth, full.turns()), der(truth, only.turns())
    print(f"\n[stages] DER full {d_full:.4f}, diarize-only {d_only:.4f}")
    assert d_only <= d_full + DER_SLACK
    res = only.result
    assert "asr" not in res["models"] and "align" not in res["models"]
    assert [s["text"] for s in res["segments"]] == [""] * len(res["segments"]) and only.words() == []
    rounded = [(round(s, 3), round(e, 3), spk) for s, e, spk in only.turns()]
    assert [(s["start"], s["end"], s["speaker"]) for s in res["segments"]] == rounded
    assert len(res["speakers"]) == 2
    srt = svc.result(only.id, "srt")
    assert srt.status_code == 200 and srt.text.count(" --> ") == len(res["segments"])


def test_align_places_exactly_the_scripts_words_at_the_synthesis_times(
    runs: dict[str, Run], conversation: tuple[Path, list[Turn]]
) -> None:
    run = runs["align"]
    assert run.status["status"] == "succeeded", run.status
    assert run.stages() == ["decode", "vad", "transcribe", "align", "merge"]
    truth = conversation[1]
    words = run.words()
    assert [w["word"] for w in words] == " ".join(t.text for t in truth).split()
    assert all(w["aligned"] for w in words)
    at = 0
    worst = 0.0
    for turn in truth:
        n = len(turn.text.split())
        first, last = words[at], words[at + n - 1]
        worst = max(worst, abs(first["start"] - turn.start), abs(last["end"] - turn.end))
        at += n
    print(f"\n[stages] align: worst turn-edge error {worst:.3f} s")
    assert worst <= EDGE_TOLERANCE_S


def test_rediarize_keeps_the_words_and_transcribes_nothing(runs: dict[str, Run]) -> None:
    full, again = runs["full"], runs["rediarize"]
    assert again.status["status"] == "succeeded", again.status
    assert again.status["options"]["rediarize_of"] == full.id
    assert (again.status["options"]["min_speakers"], again.status["options"]["max_speakers"]) == (2, 3)
    assert "transcribe" not in again.stages() and "align" not in again.stages()
    assert again.stages() == ["decode", "vad", "diarize", "merge"]
    text = [(w["word"], w["start"], w["end"]) for w in full.words()]
    assert [(w["word"], w["start"], w["end"]) for w in again.words()] == text
    assert " ".join(s["text"] for s in again.result["segments"]) == " ".join(s["text"] for s in full.result["segments"])
    assert all(w["speaker"] for w in again.words())


def test_languages_of_the_workers_model(svc: Service) -> None:
    with svc.client() as c:
        body = c.get("/v1/languages").json()
    assert body["models"] == ["tiny.en"]
    assert body["languages"] == [
        {"code": "en", "name": "english", "alignment": True, "align_backend": "whisper", "align_model": None}
    ]
