"""POST /v1/jobs and GET /v1/jobs/{id} against a real gateway, real Redis and a real broker queue."""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from tests.integration.api.conftest import (
    TEST_MAX_UPLOAD,
    Gateway,
    accounted_job_ids,
    dispatch,
    dispatching_job_ids,
    free_port,
    held_job_ids,
    queued_job_ids,
    serve,
    wait_until,
    wav_bytes,
)
from whisperx_service.api import writer
from whisperx_service.config import RedisSettings, Settings


def _no_job_left(gateway: Gateway, r: redis.Redis) -> None:
    assert gateway.job_dirs() == []
    assert r.keys("wxs:job:*") == []
    assert r.zcard("wxs:jobs") == 0
    assert accounted_job_ids(r, gateway.settings) == []


def test_submit_answers_202_stores_the_exact_bytes_and_enqueues(gateway: Gateway, redis_client: redis.Redis) -> None:
    payload = wav_bytes(0.1)[:44] + os.urandom(9 * 1024 * 1024)  # spans several write batches
    r = gateway.client.post(
        "/v1/jobs",
        files={"file": ("../../my talk.wav", payload, "audio/wav")},
        data={"language": "EN", "diarize": "false", "num_speakers": "2", "hotwords": "WhisperX"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    job_id = body["id"]
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    assert body == {
        "id": job_id,
        "status": "queued",
        "status_url": f"/v1/jobs/{job_id}",
        "events_url": f"/v1/jobs/{job_id}/events",
        "result_url": f"/v1/jobs/{job_id}/result",
    }
    assert r.headers["location"] == f"/v1/jobs/{job_id}"

    job_dir = gateway.jobs_dir / job_id
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json", "source"]  # no temp files left
    assert (job_dir / "source").read_bytes() == payload
    manifest = json.loads((job_dir / "job.json").read_text())
    assert manifest["id"] == job_id
    assert manifest["filename"] == "my talk.wav"
    assert manifest["size_bytes"] == len(payload)
    assert manifest["options"]["language"] == "en"
    assert manifest["options"]["diarize"] is False
    assert manifest["options"]["num_speakers"] == 2
    assert manifest["created_at"]

    # The dispatcher hands it to the broker (no worker is live: the capacity is one worker's, and
    # its slot is free): the task message is really in the broker's queue, with task id = job id.
    wait_until(lambda: queued_job_ids(redis_client, gateway.settings) == [job_id], what="the task message")
    assert held_job_ids(redis_client, gateway.settings) == []

    status = gateway.client.get(f"/v1/jobs/{job_id}")
    assert status.status_code == 200
    rec = status.json()
    assert rec["status"] == "queued" and rec["percent"] == 0 and rec["attempt"] == 0
    assert rec["filename"] == "my talk.wav" and rec["size_bytes"] == len(payload)
    assert rec["options"]["hotwords"] == "WhisperX" and rec["error"] is None


def test_upload_over_content_length_is_refused_before_reading(gateway: Gateway, redis_client: redis.Redis) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
            + f"Content-Length: {TEST_MAX_UPLOAD * 2}\r\n\r\n".encode()
        )
        s.settimeout(10)
        reply = b""
        while b"\r\n\r\n" not in reply or b"}}" not in reply:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"code":"payload_too_large"' in reply
    _no_job_left(gateway, redis_client)


def _chunked_body(boundary: str, file_bytes: int) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + wav_bytes(0.1)[:44]
    block = os.urandom(256 * 1024)
    sent = 44
    while sent < file_bytes:
        yield block
        sent += len(block)
    yield f"\r\n--{boundary}--\r\n".encode()


def test_upload_over_the_limit_mid_stream_leaves_nothing(gateway: Gateway, redis_client: redis.Redis) -> None:
    boundary = "xXbOuNdArYXx"
    r = gateway.client.post(
        "/v1/jobs",
        content=_chunked_body(boundary, TEST_MAX_UPLOAD + 1024 * 1024),  # no Content-Length: chunked
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "payload_too_large"
    _no_job_left(gateway, redis_client)


def test_upload_just_under_the_limit_is_accepted(gateway: Gateway) -> None:
    boundary = "xXbOuNdArYXx"
    r = gateway.client.post(
        "/v1/jobs",
        content=_chunked_body(boundary, TEST_MAX_UPLOAD - 256 * 1024),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 202, r.text


@pytest.mark.parametrize(
    ("files", "data", "status", "code"),
    [
        ({"file": ("empty.wav", b"", "audio/wav")}, {}, 422, "empty_upload"),
        (None, {"language": "en"}, 422, "invalid_request"),
        (
            {"file": ("notes.txt", b"hello, this is plain text\n" * 200, "audio/wav")},
            {},
            415,
            "unsupported_media",
        ),
        ({"file": ("a.wav", wav_bytes(), "audio/wav")}, {"num_speakers": "0"}, 422, "invalid_request"),
        ({"file": ("a.wav", wav_bytes(), "audio/wav")}, {"language": "english"}, 422, "invalid_request"),
        ({"file": ("a.wav", wav_bytes(), "audio/wav")}, {"colour": "blue"}, 422, "invalid_request"),
        (
            {"file": ("a.wav", wav_bytes(), "audio/wav")},
            {"initial_prompt": "x" * 5000},
            422,
            "invalid_request",
        ),
    ],
    ids=["empty", "missing-file", "text-file", "bad-speakers", "bad-language", "unknown-field", "long-field"],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    gateway: Gateway,
    redis_client: redis.Redis,
    files: dict[str, tuple[str, bytes, str]] | None,
    data: dict[str, str],
    status: int,
    code: str,
) -> None:
    if files is None:  # a multipart body with fields only
        r = gateway.client.post("/v1/jobs", files={"language": (None, "en")})
    else:
        r = gateway.client.post("/v1/jobs", files=files, data=data)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    _no_job_left(gateway, redis_client)


def test_options_before_the_file_are_checked_before_it_is_read(gateway: Gateway, redis_client: redis.Redis) -> None:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="min_speakers"\r\n\r\n3\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="max_speakers"\r\n\r\n2\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        ).encode()
        + wav_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = gateway.client.post(
        "/v1/jobs", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 422 and "min_speakers" in r.json()["error"]["message"]
    _no_job_left(gateway, redis_client)


def test_not_multipart_is_refused(gateway: Gateway, redis_client: redis.Redis) -> None:
    r = gateway.client.post("/v1/jobs", content=wav_bytes(), headers={"Content-Type": "audio/wav"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = gateway.client.post("/v1/jobs", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_multipart"
    _no_job_left(gateway, redis_client)


def test_truncated_multipart_body_is_refused(gateway: Gateway, redis_client: redis.Redis) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    ).encode() + wav_bytes()  # no closing boundary
    r = gateway.client.post(
        "/v1/jobs", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_multipart"
    assert "closing boundary" in r.json()["error"]["message"]
    _no_job_left(gateway, redis_client)


def test_client_disconnect_mid_upload_leaves_nothing(gateway: Gateway, redis_client: redis.Redis) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    ).encode() + wav_bytes(1.0)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(head) + 5 * 1024 * 1024}\r\n\r\n".encode()
            + head
        )
        wait_until(lambda: len(gateway.job_dirs()) == 1, what="the upload to start")
    wait_until(lambda: gateway.job_dirs() == [], what="the partial upload to be removed")
    _no_job_left(gateway, redis_client)


def test_disk_full_answers_507_and_leaves_nothing(
    gateway: Gateway, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, buffers: object, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_pwrite_all", no_space)
    r = gateway.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage"
    _no_job_left(gateway, redis_client)


def test_status_of_unknown_or_malformed_ids_is_404(gateway: Gateway) -> None:
    for job_id in ("0" * 32, "not-a-job", "A" * 32, "0" * 33):
        r = gateway.client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 404, job_id
        assert r.json()["error"]["code"] == "job_not_found"


def test_unknown_route_and_method_use_the_error_shape(gateway: Gateway) -> None:
    r = gateway.client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = gateway.client.delete("/v1/jobs")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_redis_down_answers_503_and_leaves_nothing(
    api_settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    down = api_settings.model_copy(update={"redis": RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")})
    for gw in serve(down, celery_app):
        r = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "service_unavailable"
        assert gw.job_dirs() == []
        r = gw.client.get(f"/v1/jobs/{'0' * 32}")
        assert r.status_code == 503
    assert queued_job_ids(redis_client, gw.settings) == []


def test_broker_down_holds_the_job_until_it_answers(
    api_settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    broker = Celery("wxs-broker-down", broker=f"redis://127.0.0.1:{free_port()}/0")
    broker.conf.update(broker_connection_retry=False, broker_connection_max_retries=0)
    broker.conf.task_publish_retry = False
    manual = api_settings.model_copy(update={"api": api_settings.api.model_copy(update={"dispatch_interval_s": 0})})
    try:
        for gw in serve(manual, broker):
            r = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
            assert r.status_code == 202, r.text  # recorded and held: the broker is not needed to accept it
            job_id = r.json()["id"]
            with pytest.raises(OperationalError):
                dispatch(manual, broker)
            # The send failed: the job is held again, at the head of its list, nothing half-moved.
            assert held_job_ids(redis_client, manual) == [job_id]
            assert dispatching_job_ids(redis_client, manual) == []
            assert gw.client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
            # The broker answers again: the next pass sends it.
            assert dispatch(manual, celery_app).handed == [job_id]
            assert queued_job_ids(redis_client, manual) == [job_id]
            assert held_job_ids(redis_client, manual) == []
    finally:
        broker.close()


def test_submitted_jobs_are_counted(gateway: Gateway, submit: Callable[..., str], redis_client: redis.Redis) -> None:
    submit()
    submit(diarize="false")
    counters = redis_client.hgetall("wxs:metrics")
    assert counters[b"submitted"] == b"2"
    assert int(counters[b"upload_bytes"]) == 2 * len(wav_bytes())


def test_openapi_documents_the_streamed_upload(gateway: Gateway) -> None:
    spec = gateway.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert {"file", "language", "diarize", "num_speakers", "hotwords"} <= set(body["properties"])
    assert "/v1/jobs/{job_id}/events" in spec["paths"] and "/metrics" in spec["paths"]
    assert gateway.client.get("/docs").status_code == 200
