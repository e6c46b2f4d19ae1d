"""Stages as services at the gateway: `task`, the `transcript` field and `POST /v1/jobs/{id}/rediarize`.

Real gateway and Redis, no worker: the worker's part (claim, succeed, chunk files) is played
through the real store and storage. What the worker makes of these jobs: tests/e2e/test_stages_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from tests.integration.api.conftest import Gateway, serve, wav_bytes
from whisperx_service.config import Settings
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.storage.local import Storage, atomic_write_json
from whisperx_service.store.jobs import JobStore

#: MAX_TRANSCRIPT_BYTES of these tests.
TRANSCRIPT_LIMIT = 2000


@pytest.fixture
def small(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with a transcript limit of TRANSCRIPT_LIMIT bytes."""
    limits = api_settings.limits.model_copy(update={"max_transcript_bytes": TRANSCRIPT_LIMIT})
    yield from serve(api_settings.model_copy(update={"limits": limits}), celery_app)


def _post(gw: Gateway, **fields: str) -> tuple[int, dict[str, object]]:
    r = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, data=fields)
    return r.status_code, r.json()


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"task": "summarize"}, 422, "invalid_request"),
        ({"task": "align"}, 422, "transcript_required"),
        ({"task": "align", "transcript": "   "}, 422, "transcript_required"),
        ({"task": "align", "transcript": '{"segments": [{"start": 2, "end": 1, "text": "hi"}]}'}, 422,
         "invalid_transcript"),
        ({"task": "align", "transcript": "{not json"}, 422, "invalid_transcript"),
        ({"task": "align", "transcript": "[" * 1500}, 422, "invalid_transcript"),  # too deep to parse
        ({"task": "align", "transcript": '{"text": "no segments"}'}, 422, "invalid_transcript"),
        ({"transcript": "hello there"}, 422, "invalid_request"),
        ({"task": "diarize", "diarize": "false"}, 422, "invalid_request"),
        ({"rediarize_of": "0" * 32}, 422, "invalid_request"),
        ({"task": "align", "transcript": "word " * (TRANSCRIPT_LIMIT // 5 + 1)}, 413, "transcript_too_long"),
    ],
)  # fmt: skip
def test_bad_stage_fields_are_refused_with_stable_codes_and_leave_nothing(
    small: Gateway, fields: dict[str, str], status: int, code: str
) -> None:
    got, body = _post(small, **fields)
    assert (got, body["error"]["code"]) == (status, code), body  # type: ignore[index]
    assert small.job_dirs() == []


def test_the_transcript_may_follow_the_file_and_is_stored_with_the_job(small: Gateway) -> None:
    fields = {"task": "align", "diarize": "false"}
    script = json.dumps({"segments": [{"start": 0.0, "end": 0.5, "text": " Hi there.", "speaker": "A"}]})
    r = small.client.post(
        "/v1/jobs",
        files=[("file", ("a.wav", wav_bytes(), "audio/wav")), ("transcript", (None, script))],  # after the file
        data=fields,
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert small.client.get(f"/v1/jobs/{job_id}").json()["options"]["task"] == "align"
    stored = json.loads(Storage(small.settings.storage.root).script(job_id).read_text())
    assert stored == {"text": None, "segments": [{"start": 0.0, "end": 0.5, "text": " Hi there."}]}


def test_rediarize_needs_a_succeeded_job_of_the_same_key(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit(num_speakers="2")
    r = gateway.client.post(f"/v1/jobs/{job_id}/rediarize", json={"num_speakers": 3})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "job_not_succeeded")
    r = gateway.client.post(f"/v1/jobs/{'f' * 32}/rediarize", json={})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "job_not_found")

    claim = worker_store.claim(job_id, "w", 30)
    storage = Storage(gateway.settings.storage.root)
    atomic_write_json(storage.chunks_dir(job_id) / "plan.json", {"chunks": [], "windows": [], "language": "en"})
    atomic_write_json(storage.chunks_dir(job_id) / "0.json", {"words": []})
    assert worker_store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)

    r = gateway.client.post(f"/v1/jobs/{job_id}/rediarize", json={"num_speakers": 2, "min_speakers": 1})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")
    r = gateway.client.post(f"/v1/jobs/{job_id}/rediarize", json={"speakers": 2})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_request")

    r = gateway.client.post(f"/v1/jobs/{job_id}/rediarize", json={"min_speakers": 1, "max_speakers": 3})
    assert r.status_code == 202, r.text
    new = r.json()["id"]
    assert r.headers["location"].endswith(f"/v1/jobs/{new}")
    record = gateway.client.get(f"/v1/jobs/{new}").json()
    assert record["status"] == "queued"
    opts = record["options"]
    bounds = (opts["num_speakers"], opts["min_speakers"], opts["max_speakers"])
    assert (opts["rediarize_of"], opts["diarize"], bounds) == (job_id, True, (None, 1, 3))
    assert storage.source(new).read_bytes() == storage.source(job_id).read_bytes()
    assert sorted(p.name for p in storage.chunks_dir(new).iterdir()) == ["0.reuse.json", "plan.json"]
    assert json.loads(storage.manifest(new).read_text())["options"]["rediarize_of"] == job_id


def test_languages_are_empty_until_a_worker_is_warm(gateway: Gateway) -> None:
    r = gateway.client.get("/v1/languages")
    assert (r.status_code, r.json()) == (200, {"models": [], "languages": []})
