"""End to end on real speech: a real gateway and Celery worker process, real Redis, real models.

Jobs: pyannote's real two-speaker phone call (scored against its RTTM and STM references), and a
synthetic two-voice espeak-ng conversation with exact turn times. Each job runs once per module
(fixtures) and several tests read its outcome.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from tests.e2e.conftest import E2E_WEBHOOK_SECRET, Service
from tests.e2e.receivers import Receiver, start_receiver
from tests.hostile_media import unknown_codec_wav
from tests.metrics import der, wer, word_speaker_accuracy
from tests.speech import CONVERSATION, SAMPLE_WAV, make_conversation, read_rttm, read_stm
from tests.sse import SseEvent, stream_id
from whisperx_service.errors import AudioDecodeFailed

STAGES = ["decode", "vad", "transcribe", "align", "diarize", "merge"]


class JobRun:
    """A job submitted once, with its full SSE stream read from the start, and a second reader
    that disconnects after a few events and resumes with Last-Event-ID."""

    def __init__(self, svc: Service, path: Path, **fields: Any) -> None:
        self.svc = svc
        self.accepted = svc.submit(path, **fields)
        self.id: str = self.accepted["id"]
        self.full: list[SseEvent] = []
        self.resumed_first: list[SseEvent] = []
        self.resumed_rest: list[SseEvent] = []
        reader = threading.Thread(target=lambda: self.full.extend(svc.events(self.id)))
        resumer = threading.Thread(target=self._resume)
        reader.start()
        resumer.start()
        reader.join(900)
        resumer.join(900)
        self.status = svc.wait(self.id, 60)
        r = svc.result(self.id)
        self.result: dict[str, Any] = r.json() if r.status_code == 200 else {}

    def _resume(self) -> None:
        import httpx

        from tests.sse import iter_sse

        with httpx.Client(base_url=self.svc.url, timeout=httpx.Timeout(30.0, read=600.0)) as c:
            for ev in iter_sse(c, f"/v1/jobs/{self.id}/events"):
                self.resumed_first.append(ev)
                if ev.event == "progress" or len(self.resumed_first) >= 4:
                    break  # disconnect mid-job
        last = self.resumed_first[-1].id
        assert last is not None
        self.resumed_rest = self.svc.events(self.id, last_event_id=last)

    def words(self) -> list[dict[str, Any]]:
        return [w for s in self.result["segments"] for w in s["words"]]

    def text(self) -> str:
        return " ".join(s["text"] for s in self.result["segments"])


@pytest.fixture(scope="module")
def sample_job(service: Service) -> JobRun:
    return JobRun(service, SAMPLE_WAV, diarize=True, num_speakers=2)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    return make_conversation(tmp_path_factory.mktemp("conv"))


@pytest.fixture(scope="module")
def hooks(service: Service) -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 and an outbound worker allowed to reach it."""
    receiver = start_receiver()
    service.start_outbound(OUTBOUND_ALLOW_PRIVATE="true", OUTBOUND_POLL_S="0.2")
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def conversation_job(service: Service, conversation: tuple[Path, list[Any]], hooks: Receiver) -> JobRun:
    return JobRun(
        service,
        conversation[0],
        diarize=True,
        num_speakers=2,
        language="en",
        webhook_url=hooks.url(path="/conversation"),
        webhook_events="progress",
    )


def _hooks_of(receiver: Receiver, path: str, n: int) -> list[dict[str, Any]]:
    """The first `n` webhook bodies that reached `path`, each signature verified."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got = [
            standardwebhooks.Webhook(E2E_WEBHOOK_SECRET).verify(r.body, r.headers)
            for r in list(receiver.requests)
            if r.path == path
        ]
        time.sleep(0.1)
    assert len(got) >= n, got
    return got


def test_sample_call_succeeds_with_ordered_events(sample_job: JobRun) -> None:
    assert sample_job.status["status"] == "succeeded", sample_job.status
    ev = sample_job.full
    assert ev[0].event == "snapshot"
    ids = [stream_id(e.id) for e in ev[1:] if e.id]
    assert len(ids) == len(ev) - 1, "every stored event carries an id"
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids strictly increase"
    percents = [float(e.data["percent"]) for e in ev if e.event == "progress"]
    assert percents == sorted(percents), "percent never decreases"
    first_seen = list(dict.fromkeys(e.data["stage"] for e in ev if e.event == "progress"))
    assert first_seen == STAGES, f"stages in the order first seen: {first_seen}"
    terminal = [e for e in ev if e.event in ("succeeded", "failed", "cancelled")]
    assert [e.event for e in terminal] == ["succeeded"] and ev[-1].event == "succeeded"
    assert ev[1].event == "queued"


def test_sample_call_transcript_quality(sample_job: JobRun) -> None:
    res = sample_job.result
    ref = " ".join(t.text for t in read_stm())
    w = wer(ref, sample_job.text())
    assert w <= 0.25, f"WER {w:.3f}"
    assert len(res["speakers"]) == 2, res["speakers"]
    turns = [(t["start"], t["end"], t["speaker"]) for t in res["speaker_turns"]]
    d = der(read_rttm(), turns)
    assert d <= 0.15, f"DER of the diarization turns {d:.3f}"
    # The transcript's own speaker labels: segments as speaker turns (their word-time edges are
    # less precise than the diarization's, hence the usual 0.25 s collar).
    seg_turns = [(s["start"], s["end"], s["speaker"]) for s in res["segments"]]
    d_seg = der(read_rttm(), seg_turns, collar=0.25)
    print(f"\n[sample call job] WER {w:.4f}, DER turns {d:.4f}, DER segments {d_seg:.4f}")
    assert d_seg <= 0.15, f"DER of the transcript segments {d_seg:.3f}"
    labels = {t["speaker"] for t in res["speaker_turns"]}
    assert labels == {s["id"] for s in res["speakers"]}
    words = sample_job.words()
    duration = res["duration"]
    assert abs(duration - 30.0) < 1.0
    starts = [x["start"] for x in words]
    assert starts == sorted(starts), "word start times never go back"
    assert all(0 <= x["start"] <= x["end"] <= duration for x in words)
    assert all(x["speaker"] in {s["id"] for s in res["speakers"]} for x in words)


def test_sample_call_status_and_formats(sample_job: JobRun, service: Service) -> None:
    st = sample_job.status
    assert st["percent"] == 100 and st["attempt"] == 1 and st["error"] is None
    assert st["started_at"] and st["finished_at"] and abs(st["duration_s"] - 30.0) < 1.0
    srt = service.result(sample_job.id, "srt")
    assert srt.status_code == 200
    cues = [c for c in srt.text.strip().split("\n\n") if c]
    assert len(cues) >= len(sample_job.result["segments"])
    for cue in cues:
        n, times, *text = cue.splitlines()
        assert n.isdigit() and " --> " in times and text and text[0].startswith("[SPEAKER_")
    vtt = service.result(sample_job.id, "vtt")
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    assert "<v SPEAKER_0" in vtt.text


def test_sse_resume_with_last_event_id_loses_and_repeats_nothing(sample_job: JobRun) -> None:
    full_ids = [e.id for e in sample_job.full[1:]]
    first = [e.id for e in sample_job.resumed_first[1:]]
    rest = [e.id for e in sample_job.resumed_rest]
    assert sample_job.resumed_rest[0].event != "snapshot", "a resumed stream sends no snapshot"
    assert first + rest == full_ids, "every event exactly once across the reconnect"
    assert rest, "the reconnect happened before the job ended"


def test_synthetic_conversation_words_and_speakers(conversation_job: JobRun, conversation: Any) -> None:
    _, gt = conversation
    assert conversation_job.status["status"] == "succeeded", conversation_job.status
    res = conversation_job.result
    w = wer(" ".join(t.text for t in gt), conversation_job.text())
    assert w <= 0.10, f"WER {w:.3f}"
    acc, matched = word_speaker_accuracy(gt, conversation_job.words())
    assert matched >= 100
    assert acc >= 0.90, f"word-to-speaker accuracy {acc:.3f}"
    words_total = sum(len(s["words"]) for s in res["segments"])
    same = sum(1 for s in res["segments"] for x in s["words"] if x["speaker"] == s["speaker"])
    nearest = [min(abs(x["start"] - t.start) for x in conversation_job.words()) for t in gt]
    print(
        f"\n[conversation job] WER {w:.4f}, word-to-speaker accuracy {acc:.4f} over {matched} words, "
        f"words with their segment's speaker {same / words_total:.4f}, turn starts off by <= {max(nearest):.3f} s"
    )
    assert same / words_total >= 0.95
    # word boundaries from the whisper aligner: each turn's first word starts near the turn start
    for t in gt:
        near = min(abs(x["start"] - t.start) for x in conversation_job.words())
        assert near <= 0.5, f"no word starts within 0.5 s of turn {t}"


def test_models_load_at_worker_start_not_in_jobs(sample_job: JobRun, conversation_job: JobRun) -> None:
    first, second = sorted([sample_job, conversation_job], key=lambda j: j.status["finished_at"])
    assert first.result["models_loaded"] == [], "the worker loaded its models at start, before the first job"
    assert second.result["models_loaded"] == [], "the second job on the same worker loads nothing"


def test_vad_is_a_stage_with_progress_between_decode_and_transcribe(service: Service, tmp_path: Path) -> None:
    """Two sentences 5 min apart (about 308 s): the VAD scans two 300 s blocks. The job's events show
    the `vad` stage after decode and before transcribe, its fraction of the audio scanned rising
    0 -> 50 -> 100 with an ETA, and transcription starting only after the VAD reached 100 %."""
    wav, gt = make_conversation(tmp_path / "apart", CONVERSATION[:2], pause_s=300.0)
    assert gt[1].start > 300.0, "the second sentence is in the VAD's second block"
    run = JobRun(service, wav, diarize=False, align=False)
    assert run.status["status"] == "succeeded", run.status
    progress = [e for e in run.full if e.event == "progress"]
    stages = [e.data["stage"] for e in progress]
    vad_at = [i for i, s in enumerate(stages) if s == "vad"]
    assert vad_at, stages
    assert max(i for i, s in enumerate(stages) if s == "decode") < vad_at[0], stages
    assert vad_at == list(range(vad_at[0], vad_at[-1] + 1)), "the vad events are one run"
    assert stages[vad_at[-1] + 1] == "transcribe", stages
    scanned = [progress[i].data["stage_percent"] for i in vad_at]
    print(f"\n[vad stage] stage_percent {scanned}, eta_s {[progress[i].data.get('eta_s') for i in vad_at]}")
    assert scanned == [0.0, 50.0, 100.0], "one event per 300 s block scanned, and the stage's end"
    assert all(progress[i].data["chunks"] == 1 for i in vad_at)
    assert any(progress[i].data.get("eta_s") is not None for i in vad_at), "the vad stage carries an ETA"
    percents = [e.data["percent"] for e in progress]
    assert percents == sorted(percents) and progress[vad_at[-1]].data["percent"] == 10.0
    assert run.result["timings"]["vad"] > 0
    w = wer(" ".join(t.text for t in gt), run.text())
    assert w <= 0.10, f"WER {w:.3f} of {run.text()!r}"
    assert run.result["segments"][-1]["start"] > 300.0, "the sentence after the silence is in the transcript"


def test_a_succeeded_job_sends_one_signed_event_per_stage_then_its_end(
    conversation_job: JobRun, hooks: Receiver
) -> None:
    body = _hooks_of(hooks, "/conversation", len(STAGES) + 1)
    # One delivery per event, each its own task: they may arrive in any order.
    kinds = sorted((b["type"], b.get("stage", "")) for b in body)
    assert kinds == sorted([("job.stage", s) for s in STAGES] + [("job.ended", "")]), kinds
    assert all(b["job_id"] == conversation_job.id for b in body)
    (end,) = [b for b in body if b["type"] == "job.ended"]
    assert end["status"] == "succeeded" and "error" not in end
    assert end["result_url"] == f"/v1/jobs/{conversation_job.id}/result"


def test_undecodable_audio_fails_cleanly(service: Service, tmp_path: Path, hooks: Receiver) -> None:
    # A well-formed WAV (so libmagic and ffprobe let it through) whose codec tag no decoder knows.
    bad = tmp_path / "broken.wav"
    bad.write_bytes(unknown_codec_wav())
    job = service.submit(bad, webhook_url=hooks.url(path="/broken"))
    st = service.wait(job["id"], 120)
    assert st["status"] == "failed"
    assert st["error"]["code"] == "audio_decode_failed"
    assert st["error"]["message"] == AudioDecodeFailed.public_message  # never ffmpeg's output
    job_dir = service.storage / "jobs" / job["id"]
    leftovers = sorted(p.name for p in job_dir.iterdir())
    assert leftovers == ["final.json", "job.json", "source"], leftovers  # no work/ (decoded audio) left
    final = json.loads((job_dir / "final.json").read_text())
    assert (final["status"], final["error_code"]) == ("failed", "audio_decode_failed")
    assert service.result(job["id"]).status_code == 409
    ev = service.events(job["id"])
    assert ev[-1].event == "failed" and ev[-1].data["code"] == "audio_decode_failed"
    (hook,) = _hooks_of(hooks, "/broken", 1)  # the end only (webhook_events=end, the default)
    assert (hook["type"], hook["status"], hook["job_id"]) == ("job.ended", "failed", job["id"])
    assert hook["error"] == {"code": "audio_decode_failed", "message": AudioDecodeFailed.public_message}


def test_text_file_is_refused_at_upload(service: Service, tmp_path: Path) -> None:
    txt = tmp_path / "notes.wav"
    txt.write_text("this is not audio at all, just some words in a text file\n" * 20)
    jobs_root = service.storage / "jobs"
    before = sorted(p.name for p in jobs_root.iterdir()) if jobs_root.exists() else []
    with service.client() as c, txt.open("rb") as f:
        r = c.post("/v1/jobs", files={"file": ("notes.wav", f, "audio/wav")})
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media"
    after = sorted(p.name for p in jobs_root.iterdir()) if jobs_root.exists() else []
    assert after == before, "no job directory and no temp file is left behind"
