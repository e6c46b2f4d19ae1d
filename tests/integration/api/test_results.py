"""GET /v1/jobs/{id}/result: 404 unknown, 409 until succeeded, then every format from result.json."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.integration.api.conftest import Gateway
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.domain.transcript import Segment, SpeakerInfo, Transcript, Word
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.jobs import JobStore

TRANSCRIPT = Transcript(
    language="en",
    duration=4.0,
    segments=[
        Segment(
            id=0,
            start=0.5,
            end=1.5,
            text="Hello there.",
            speaker="SPEAKER_00",
            words=[
                Word(word="Hello", start=0.5, end=0.9, score=0.9, speaker="SPEAKER_00"),
                Word(word="there.", start=1.0, end=1.5, score=0.8, speaker="SPEAKER_00"),
            ],
        ),
        Segment(
            id=1,
            start=2.0,
            end=3.25,
            text="General Kenobi!",
            speaker="SPEAKER_01",
            words=[
                Word(word="General", start=2.0, end=2.6, score=0.9, speaker="SPEAKER_01"),
                Word(word="Kenobi!", start=2.7, end=3.25, score=0.9, speaker="SPEAKER_01"),
            ],
        ),
    ],
    speakers=[SpeakerInfo(id="SPEAKER_00", talk_time_s=1.0), SpeakerInfo(id="SPEAKER_01", talk_time_s=1.25)],
)


def _succeed(gateway: Gateway, store: JobStore, job_id: str) -> None:
    claim = store.claim(job_id, "w", lease_s=60)
    atomic_write_json(Storage(gateway.settings.storage.root).result(job_id), TRANSCRIPT.model_dump(mode="json"))
    assert store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)


def test_result_of_unknown_job_is_404(gateway: Gateway) -> None:
    for job_id in ("f" * 32, "../../etc"):
        r = gateway.client.get(f"/v1/jobs/{job_id}/result")
        assert r.status_code == 404 and r.json()["error"]["code"] in ("job_not_found", "not_found")


def test_result_before_success_is_409_with_the_status(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    r = gateway.client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "job_not_finished" and "queued" in r.json()["error"]["message"]
    claim = worker_store.claim(job_id, "w", lease_s=60)
    assert "running" in gateway.client.get(f"/v1/jobs/{job_id}/result").json()["error"]["message"]
    worker_store.finish(job_id, JobStatus.failed, attempt=claim.attempt, error_code="x", error_message="y")
    r = gateway.client.get(f"/v1/jobs/{job_id}/result?format=srt")
    assert r.status_code == 409 and "failed" in r.json()["error"]["message"]


def test_result_json(gateway: Gateway, submit: Callable[..., str], worker_store: JobStore) -> None:
    job_id = submit()
    _succeed(gateway, worker_store, job_id)
    r = gateway.client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert "content-disposition" not in r.headers
    assert Transcript.model_validate(r.json()) == TRANSCRIPT
    assert json.loads(gateway.client.get(f"/v1/jobs/{job_id}/result?format=json").text) == r.json()


@pytest.mark.parametrize(
    ("fmt", "media_type", "needle"),
    [
        ("srt", "application/x-subrip", "00:00:00,500 --> 00:00:01,500"),
        ("vtt", "text/vtt", "WEBVTT"),
        ("txt", "text/plain", "General Kenobi!"),
        ("tsv", "text/tab-separated-values", "500\t1500\tSPEAKER_00\tHello there."),
    ],
)
def test_result_text_formats_are_attachments(
    gateway: Gateway,
    submit: Callable[..., str],
    worker_store: JobStore,
    fmt: str,
    media_type: str,
    needle: str,
) -> None:
    job_id = submit()
    _succeed(gateway, worker_store, job_id)
    r = gateway.client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media_type)
    assert r.headers["content-disposition"] == f'attachment; filename="{job_id}.{fmt}"'
    assert needle in r.text


def test_unknown_format_is_422(gateway: Gateway, submit: Callable[..., str], worker_store: JobStore) -> None:
    job_id = submit()
    _succeed(gateway, worker_store, job_id)
    r = gateway.client.get(f"/v1/jobs/{job_id}/result?format=docx")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_succeeded_job_without_result_file_is_a_500_with_a_code(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    claim = worker_store.claim(job_id, "w", lease_s=60)
    worker_store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)
    r = gateway.client.get(f"/v1/jobs/{job_id}/result")
    assert r.status_code == 500 and r.json()["error"]["code"] == "result_missing"


NAMES = json.dumps({"SPEAKER_00": "Alice", "SPEAKER_01": "Bob, the builder"})
#: format -> (a text the names must put in it, a text of the labels that must be gone).
NAMED = {
    "srt": ("[Alice] Hello there.", "[SPEAKER_00]"),
    "vtt": ("<v Bob, the builder>General Kenobi!", "<v SPEAKER_01>"),
    "txt": ("Alice: Hello there.\nBob, the builder: General Kenobi!\n", "SPEAKER_"),
    "tsv": ("500\t1500\tAlice\tHello there.", "SPEAKER_"),
}
#: Malformed `speaker_names` -> a text its 400 message must hold.
MALFORMED = {
    "SPEAKER_00:Alice": "JSON object",
    '["Alice"]': "JSON object",
    '{"SPEAKER_00": 7}': "string",
    '{"SPEAKER_00": "   "}': "empty",
    '{"SPEAKER_00": "' + "x" * 81 + '"}': "longer than 80",
    '{"SPEAKER_00": "A\\u0000B"}': "control",
    '{"SPEAKER_07": "Carol"}': "not in this transcript",
    '{"SPEAKER_00": "Bob", "SPEAKER_01": "Bob"}': "share a name",
    '{"SPEAKER_00": "SPEAKER_01"}': "share a name",
    "{" + ",".join(f'"S{i}": "n"' for i in range(65)) + "}": "more than 64",
    "[" * 5000: "JSON object",  # deeper than the JSON parser's recursion limit
}


def test_speaker_names_reach_every_format(gateway: Gateway, submit: Callable[..., str], worker_store: JobStore) -> None:
    job_id = submit()
    _succeed(gateway, worker_store, job_id)
    for fmt, (named, unnamed) in NAMED.items():
        r = gateway.client.get(f"/v1/jobs/{job_id}/result", params={"format": fmt, "speaker_names": NAMES})
        assert r.status_code == 200, r.text
        assert named in r.text and unnamed not in r.text, (fmt, r.text)
    # JSON: one speaker renamed (its name's whitespace collapsed), the other keeps its label;
    # segments, words and the speaker list all carry the name.
    names = json.dumps({"SPEAKER_01": "  Bob \n Smith "})
    body = gateway.client.get(f"/v1/jobs/{job_id}/result", params={"speaker_names": names}).json()
    assert [s["speaker"] for s in body["segments"]] == ["SPEAKER_00", "Bob Smith"]
    assert [w["speaker"] for s in body["segments"] for w in s["words"]] == ["SPEAKER_00"] * 2 + ["Bob Smith"] * 2
    assert [s["id"] for s in body["speakers"]] == ["SPEAKER_00", "Bob Smith"]
    # The stored result is untouched.
    assert Transcript.model_validate(gateway.client.get(f"/v1/jobs/{job_id}/result").json()) == TRANSCRIPT


def test_malformed_speaker_names_are_400_with_a_stable_code(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    _succeed(gateway, worker_store, job_id)
    for names, needle in MALFORMED.items():
        r = gateway.client.get(f"/v1/jobs/{job_id}/result", params={"format": "srt", "speaker_names": names})
        assert r.status_code == 400, (names, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_speaker_names" and needle in error["message"], (names, error)
