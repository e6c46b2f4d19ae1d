"""The official `openai` Python client against a real gateway and Celery worker on real speech.

Three real jobs in all (a shared 2-core box): the four-turn two-voice conversation, diarized,
serves every response format, both granularities and streaming, because the fields that shape only
the answer (`response_format`, `timestamp_granularities[]`, `stream`) are not part of an
Idempotency-Key's fingerprint: every call below repeats the first one's key and gets the same job.
The first call is sent twice at once (one job). A one-sentence file is the job of the 429 retry,
and a third job is abandoned by its client (cancelled after API_OPENAI_CANCEL_GRACE_S).
Text is scored by WER against the script; times against the job API's own result.
"""

from __future__ import annotations

import io
import json
import socket
import time
import uuid
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.metrics import wer
from tests.speech import CONVERSATION, Turn, make_conversation

TURNS = CONVERSATION[:4]
#: WER ceiling of the tiny.en model on espeak-ng speech (as the other e2e tests allow).
MAX_WER = 0.25
#: Seconds a time of the OpenAI answer may differ from the job API's result (rounding only).
TIME_TOL_S = 0.002
ENV = {
    "API_OPENAI_CANCEL_GRACE_S": "1",
    "AUTH_ADDRESS_RATE_LIMIT": "60/5second",
    # 20 s chunks: the conversation is two, the looped files more, so a stream has text before the end.
    "CHUNK_BYTES": str(20 * 32_000),
    "CHUNK_OVERLAP_S": "4",
    "ASR_WINDOW_S": "10",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    s = start_service(tmp_path_factory.mktemp("openai"), redis_url, models_dir, **ENV)
    yield s
    stop_service(s)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Turn]]:
    return make_conversation(tmp_path_factory.mktemp("conv"), TURNS)


def _client(svc: Service, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{svc.url}/v1", api_key="unused-auth-is-off", **kw)


def _jobs(svc: Service) -> list[dict[str, Any]]:
    """Every job of the service; waits out a 429 (this module's address budget is small and one
    test spends it on purpose)."""
    with svc.client() as c:
        for _ in range(10):
            r = c.get("/v1/jobs", params={"limit": 500})
            if r.status_code != 429:
                break
            time.sleep(float(r.headers["retry-after"]))
        assert r.status_code == 200, r.text
        return list(r.json()["jobs"])


@dataclass
class Calls:
    """The one diarized job, fetched in every shape."""

    key: str
    job_id: str
    first: list[Any]  # the two concurrent first calls' parsed answers (diarized_json, json)
    first_job_ids: list[str]
    formats: dict[str, Any]
    stream: list[Any]
    result: dict[str, Any]  # the job API's result.json
    jobs_after: list[dict[str, Any]]


@pytest.fixture(scope="module")
def calls(svc: Service, conversation: tuple[Path, list[Turn]]) -> Calls:
    path = conversation[0]
    key = f"e2e-{uuid.uuid4()}"
    common: dict[str, Any] = {
        "model": "whisper-1",
        "language": "en",
        "extra_body": {"diarize": True, "num_speakers": 2},
        "extra_headers": {"Idempotency-Key": key},
    }
    client = _client(svc, max_retries=10)

    def create(**kw: Any) -> tuple[Any, str]:
        raw = client.audio.transcriptions.with_raw_response.create(file=path.open("rb"), **common, **kw)
        return raw.parse(), raw.headers["x-job-id"]

    # The same request twice at once: one reserves the key, the other is told 409
    # idempotency_in_progress (Retry-After: 1), the SDK retries and waits on the same job.
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(create, response_format=f) for f in ("diarized_json", "json")]
        first = [f.result(timeout=900) for f in futures]
    job_id = first[0][1]
    formats: dict[str, Any] = {}
    for fmt in ("text", "srt", "vtt"):
        formats[fmt] = create(response_format=fmt)
    formats["verbose_json"] = create(response_format="verbose_json", timestamp_granularities=["word", "segment"])
    formats["verbose_segments"] = create(response_format="verbose_json")
    stream = list(
        client.audio.transcriptions.create(file=path.open("rb"), stream=True, response_format="diarized_json", **common)
    )
    result = svc.result(job_id).json()
    return Calls(key, job_id, [a for a, _ in first], [j for _, j in first], formats, stream, result, _jobs(svc))


def _script(turns: list[Turn]) -> str:
    return " ".join(t.text for t in turns)


def test_one_job_serves_every_call_of_one_key(calls: Calls) -> None:
    assert calls.first_job_ids == [calls.job_id, calls.job_id]
    assert all(job_id == calls.job_id for _, job_id in calls.formats.values())
    assert [j["id"] for j in calls.jobs_after] == [calls.job_id], "one job in the service"
    job = calls.jobs_after[0]
    assert job["status"] == "succeeded" and job["attempt"] == 1
    assert job["options"]["diarize"] is True and job["options"]["num_speakers"] == 2


def test_json_and_text_match_the_script(calls: Calls, conversation: tuple[Path, list[Turn]]) -> None:
    diarized, plain = calls.first
    text = plain.text
    w = wer(_script(conversation[1]), text)
    assert w <= MAX_WER, f"WER {w:.3f}: {text}"
    assert plain.usage.type == "duration"
    assert abs(plain.usage.seconds - calls.result["duration"]) < 0.01
    assert diarized.text == text
    body, _ = calls.formats["text"]
    assert isinstance(body, str) and body.strip() == text


def test_diarized_json_has_two_speakers_at_the_right_times(calls: Calls, conversation: tuple[Path, list[Turn]]) -> None:
    d = calls.first[0]
    assert d.task == "transcribe" and d.segments
    assert {s.type for s in d.segments} == {"transcript.text.segment"}
    assert len({s.speaker for s in d.segments}) == 2
    ref = [s for s in calls.result["segments"] if s["text"].strip()]
    assert [s.text for s in d.segments] == [s["text"].strip() for s in ref]
    for got, want in zip(d.segments, ref, strict=True):
        assert abs(got.start - want["start"]) <= TIME_TOL_S and abs(got.end - want["end"]) <= TIME_TOL_S
        assert got.speaker == want["speaker"]
    # Each script turn's midpoint lies in a segment of the speaker the turn's voice got.
    by_voice: dict[str, set[str]] = {}
    for turn in conversation[1]:
        mid = (turn.start + turn.end) / 2
        hit = [s.speaker for s in d.segments if s.start - 0.5 <= mid <= s.end + 0.5]
        assert hit, f"no segment around {mid:.1f} s"
        by_voice.setdefault(turn.speaker, set()).add(hit[0])
    assert by_voice["A"].isdisjoint(by_voice["B"]), by_voice


def test_verbose_json_segments_and_words(calls: Calls) -> None:
    v, _ = calls.formats["verbose_json"]
    assert v.task == "transcribe" and v.language == "english"
    assert abs(v.duration - calls.result["duration"]) < 0.01
    words = [w for s in calls.result["segments"] for w in s["words"]]
    assert [w.word for w in v.words] == [w["word"] for w in words]
    for got, want in zip(v.words, words, strict=True):
        assert abs(got.start - want["start"]) <= TIME_TOL_S and abs(got.end - want["end"]) <= TIME_TOL_S
    assert all(w.model_extra and w.model_extra["speaker"] in {"SPEAKER_00", "SPEAKER_01"} for w in v.words)
    segs = v.segments or []
    assert len(segs) == len(calls.result["segments"])
    for got, want in zip(segs, calls.result["segments"], strict=True):
        assert got.text.strip() == want["text"].strip() and got.text.startswith(" ")
        assert abs(got.start - want["start"]) <= TIME_TOL_S
        assert got.seek == int(got.start // 30) * 3000 and got.tokens == []
        assert 0.5 < got.compression_ratio < 2.4  # real text, not a repetition loop
        assert (got.model_extra or {}).get("speaker") == want["speaker"]
    only_segments, _ = calls.formats["verbose_segments"]
    assert only_segments.words is None and len(only_segments.segments or []) == len(segs)


def test_srt_and_vtt(calls: Calls) -> None:
    srt, _ = calls.formats["srt"]
    cues = [c for c in srt.strip().split("\n\n") if c]
    assert cues and all(" --> " in c.splitlines()[1] for c in cues)
    assert cues[0].splitlines()[2].startswith("[SPEAKER_")
    vtt, _ = calls.formats["vtt"]
    assert vtt.startswith("WEBVTT") and "<v SPEAKER_0" in vtt
    t = calls.result["segments"][0]
    assert f"00:00:0{int(t['start'])}" in vtt.split("\n\n")[1]


def test_stream_deltas_join_to_the_done_text(calls: Calls) -> None:
    types = [e.type for e in calls.stream]
    assert types[-1] == "transcript.text.done" and types.count("transcript.text.done") == 1
    deltas = "".join(e.delta for e in calls.stream if e.type == "transcript.text.delta")
    done = calls.stream[-1]
    assert deltas == done.text == calls.first[1].text
    segments = [e for e in calls.stream if e.type == "transcript.text.segment"]
    assert [(s.text, s.speaker) for s in segments] == [(s.text, s.speaker) for s in calls.first[0].segments]


def test_translation_on_the_english_only_model_is_400(svc: Service, conversation: tuple[Path, list[Turn]]) -> None:
    before = len(_jobs(svc))
    with pytest.raises(openai.BadRequestError) as e:
        _client(svc).audio.translations.create(file=conversation[0].open("rb"), model="whisper-1")
    assert e.value.status_code == 400 and e.value.code == "translation_not_supported"
    assert "English-only" in e.value.message and "/" not in e.value.message
    assert len(_jobs(svc)) == before, "no job for a refused translation"


def test_parameter_errors_are_the_sdks_exceptions(svc: Service, calls: Calls, tmp_path: Path) -> None:
    client = _client(svc, max_retries=0)
    path = _wav_of(calls, tmp_path)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(file=path.open("rb"), model="whisper-1", response_format="xml")  # type: ignore[call-overload]
    assert e.value.code == "invalid_parameter" and e.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(
            file=path.open("rb"),
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["char"],  # type: ignore[list-item]
        )
    assert e.value.param == "timestamp_granularities"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(file=path.open("rb"), model="whisper-1", known_speaker_names=["agent"])
    assert e.value.code == "unsupported"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    # The same Idempotency-Key with another file: 409 idempotency_conflict, not retried.
    with pytest.raises(openai.ConflictError) as e:
        client.with_options(max_retries=3).audio.transcriptions.create(
            file=path.open("rb"),
            model="whisper-1",
            language="en",
            extra_body={"diarize": True, "num_speakers": 2},
            extra_headers={"Idempotency-Key": calls.key},
        )
    assert e.value.code == "idempotency_conflict"
    assert e.value.response.headers["x-should-retry"] == "false"
    models = client.models.list()
    assert {m.id for m in models.data} == {"tiny.en", "whisper-1"}


def _wav_of(calls: Calls, tmp: Path) -> Path:
    """A one-sentence file (the first turn's voice), made once."""
    out = tmp / "sentence"
    path, _ = make_conversation(out, [TURNS[0]])
    return path


def test_sdk_retries_a_429_after_retry_after_and_runs_one_job(svc: Service, calls: Calls, tmp_path: Path) -> None:
    path = _wav_of(calls, tmp_path)
    before = {j["id"] for j in _jobs(svc)}
    seen: list[tuple[float, int, str | None]] = []

    def hook(response: Any) -> None:
        seen.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))

    http = openai.DefaultHttpxClient(event_hooks={"response": [hook]})
    client = _client(svc, max_retries=6, http_client=http)
    with httpx.Client(base_url=svc.url) as c:  # use up the address's request budget
        for _ in range(200):
            if c.get("/v1/models").status_code == 429:
                break
    out = client.audio.transcriptions.create(file=path.open("rb"), model="whisper-1", language="en")
    assert seen[0][1] == 429 and seen[0][2] is not None, seen
    assert seen[-1][1] == 200
    waited = seen[1][0] - seen[0][0]
    assert waited >= float(seen[0][2]) - 0.05, f"retried after {waited:.2f} s, Retry-After {seen[0][2]}"
    assert wer(TURNS[0][1], out.text) <= MAX_WER, out.text
    new = [j for j in _jobs(svc) if j["id"] not in before]
    assert len(new) == 1 and new[0]["status"] == "succeeded", new


def _looped_wav(path: Path, times: int) -> bytes:
    """The WAV at `path` played `times` times in a row, as WAV bytes."""
    with wave.open(str(path), "rb") as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(frames * times)
    return out.getvalue()


def test_a_client_that_leaves_cancels_its_job(svc: Service, conversation: tuple[Path, list[Turn]]) -> None:
    before = {j["id"] for j in _jobs(svc)}
    # The conversation four times (about 90 s of speech): the job cannot end before the disconnect,
    # the grace period and the worker's next cancel poll, however fast the machine.
    request = httpx.Request(
        "POST",
        f"{svc.url}/v1/audio/transcriptions",
        files={"file": ("c.wav", _looped_wav(conversation[0], 4), "audio/wav")},
        data={"model": "whisper-1", "diarize": "true"},
    )
    body = request.read()
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {request.headers['content-type']}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    port = int(svc.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head.encode() + body)
        job: dict[str, Any] | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job is None:
            new = [j for j in _jobs(svc) if j["id"] not in before]
            job = new[0] if new and new[0]["status"] == "running" else None
            time.sleep(0.3)
        assert job is not None, "the job never started"
    # The connection is closed, unanswered: after API_OPENAI_CANCEL_GRACE_S the job is cancelled.
    final = svc.wait(job["id"], 120)
    assert final["status"] == "cancelled", final


def test_a_long_files_stream_sends_text_before_its_job_ends(
    svc: Service, conversation: tuple[Path, list[Turn]]
) -> None:
    # The conversation twice (~45 s): three 20 s chunks. Chunk 0's text is final once chunk 1 is
    # done, while chunk 2 still runs: the first delta must come while the job is running.
    before = {j["id"] for j in _jobs(svc)}
    audio = _looped_wav(conversation[0], 2)
    stream = _client(svc, max_retries=0).audio.transcriptions.create(
        file=("twice.wav", audio), model="whisper-1", language="en", stream=True
    )
    deltas: list[str] = []
    status_at_first_delta = None
    done: Any = None
    for event in stream:
        if event.type == "transcript.text.delta":
            if not deltas:
                new = [j for j in _jobs(svc) if j["id"] not in before]
                status_at_first_delta = new[0]["status"] if new else None
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event
    assert done is not None
    assert status_at_first_delta == "running", "the first delta came only when the job ended"
    assert len(deltas) >= 2
    assert "".join(deltas) == done.text
    assert wer(" ".join([_script(conversation[1])] * 2), done.text) <= MAX_WER, done.text
    (job,) = [j for j in _jobs(svc) if j["id"] not in before]
    with svc.client() as c, c.stream("GET", f"/v1/jobs/{job['id']}/events") as r:
        finals = [
            json.loads(line[5:])["final_chunk"]
            for line in r.iter_lines()
            if line.startswith("data:") and '"final_chunk"' in line
        ]
    assert finals == list(range(len(finals))) and len(finals) >= 2, finals
