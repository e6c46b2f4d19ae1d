"""tus 1.0 at /v1/uploads against the real gateway, Redis and storage (no worker: jobs stay held).

Core (HEAD, PATCH at the right offset only, 409/415/412), creation, termination and expiration
(410, then removed by the retention sweep); keys own their uploads; the storage quota counts
unfinished uploads; a finished upload becomes a job by `POST /v1/jobs` with `upload_id` (the file
is moved: same inode) or by its last PATCH when its metadata asks for one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from celery import Celery

from tests.integration.api.conftest import Gateway, accounted_job_ids, serve, wait_until, wav_bytes
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.config import AuthSettings, Settings
from whisperx_service.domain.keys import Quotas
from whisperx_service.maintenance.retention import sweep_retention
from whisperx_service.storage.local import Storage
from whisperx_service.storage.uploads import UploadStore
from whisperx_service.store.async_jobs import AsyncJobStore

TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


def metadata(**pairs: str) -> str:
    """An Upload-Metadata header value."""
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in pairs.items())


def create(client: httpx.Client, length: int, headers: dict[str, str] | None = None, **meta: str) -> str:
    """POST /v1/uploads; returns the upload's path (from Location)."""
    h = {**TUS, "Upload-Length": str(length), **(headers or {})}
    if meta:
        h["Upload-Metadata"] = metadata(**meta)
    r = client.post("/v1/uploads", headers=h)
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0" and r.headers["Upload-Expires"].endswith("GMT")
    location = r.headers["Location"]
    assert location.startswith("/v1/uploads/") and len(location.rsplit("/", 1)[1]) == 32
    return location


def offset(client: httpx.Client, url: str, headers: dict[str, str] | None = None) -> int:
    """The upload's offset from HEAD."""
    r = client.head(url, headers={**TUS, **(headers or {})})
    assert r.status_code == 200, r.status_code
    return int(r.headers["Upload-Offset"])


def patch(
    client: httpx.Client, url: str, at: int, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """PATCH `body` at offset `at`."""
    return client.patch(url, content=body, headers={**PATCH, "Upload-Offset": str(at), **(headers or {})})


def code(r: httpx.Response) -> str:
    """The error code of an error answer."""
    return str(r.json()["error"]["code"])


def test_core_creation_and_a_job_made_of_the_moved_file(gateway: Gateway, redis_client: redis.Redis) -> None:
    c = gateway.client
    r = c.options("/v1/uploads")
    assert r.status_code == 204 and r.headers["Tus-Version"] == "1.0.0"
    assert r.headers["Tus-Extension"] == "creation,termination,expiration"
    assert int(r.headers["Tus-Max-Size"]) == gateway.settings.limits.max_upload_bytes
    audio = wav_bytes(3.0)
    url = create(c, len(audio), filename="talk.wav")
    assert offset(c, url) == 0
    half = len(audio) // 2

    r = patch(c, url, 0, audio[:half], {"Content-Type": "text/plain"})
    assert r.status_code == 415 and code(r) == "unsupported_media_type" and r.headers["Tus-Resumable"] == "1.0.0"
    r = c.patch(url, content=audio[:half], headers={"Content-Type": PATCH["Content-Type"], "Upload-Offset": "0"})
    assert r.status_code == 412 and code(r) == "tus_version_unsupported" and r.headers["Tus-Version"] == "1.0.0"
    r = patch(c, url, 7, audio[:half])
    assert r.status_code == 409 and code(r) == "upload_offset_mismatch"
    assert offset(c, url) == 0, "refused PATCHes wrote nothing"

    r = patch(c, url, 0, audio[:half])
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == half
    head = c.head(url, headers=TUS)
    assert int(head.headers["Upload-Offset"]) == half and int(head.headers["Upload-Length"]) == len(audio)
    assert base64.b64decode(head.headers["Upload-Metadata"].split(" ")[1]) == b"talk.wav"
    r = patch(c, url, 0, audio[:half])
    assert r.status_code == 409 and code(r) == "upload_offset_mismatch", "a stale offset is refused"
    r = c.post("/v1/jobs", json={"upload_id": url.rsplit("/", 1)[1]})
    assert r.status_code == 409 and code(r) == "upload_incomplete"
    r = patch(c, url, half, audio[half:] + b"extra")
    assert r.status_code == 413 and code(r) == "payload_too_large"
    assert offset(c, url) == half

    r = patch(c, url, half, audio[half:])
    assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == len(audio) and "Job-Id" not in r.headers
    upload_id = url.rsplit("/", 1)[1]
    data = UploadStore(gateway.settings.storage.root).data(upload_id)
    inode = data.stat().st_ino
    r = c.post("/v1/jobs", data={"upload_id": upload_id, "language": "en", "diarize": "false"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    source = Storage(gateway.settings.storage.root).source(job_id)
    assert source.stat().st_ino == inode and not data.exists(), "the file was moved, not copied"
    assert hashlib.sha256(source.read_bytes()).digest() == hashlib.sha256(audio).digest()
    job = c.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "queued" and job["filename"] == "talk.wav" and job["options"]["diarize"] is False
    assert job_id in accounted_job_ids(redis_client, gateway.settings)
    again = c.post("/v1/jobs", json={"upload_id": upload_id})
    assert again.status_code == 202 and again.json()["id"] == job_id, "the same upload answers the same job"
    assert c.head(url, headers=TUS).headers["Job-Id"] == job_id
    assert code(c.post("/v1/jobs", json={"upload_id": "0" * 32})) == "upload_not_found"
    assert code(c.post("/v1/jobs", json={"upload_id": upload_id, "bogus": 1})) == "invalid_request"


def test_metadata_with_job_options_makes_the_job_at_the_last_patch(gateway: Gateway) -> None:
    c = gateway.client
    audio = wav_bytes(1.0)
    url = create(c, len(audio), filename="auto.wav", language="en", num_speakers="2")
    r = patch(c, url, 0, audio)
    assert r.status_code == 204, r.text
    job = c.get(f"/v1/jobs/{r.headers['Job-Id']}").json()
    assert r.headers["Job-Status-Url"].endswith(job["id"])
    assert job["filename"] == "auto.wav" and job["options"]["num_speakers"] == 2 and job["options"]["language"] == "en"
    # The last PATCH sent again (its answer was lost): the same job, nothing written.
    again = patch(c, url, len(audio), b"")
    assert again.status_code == 204 and again.headers["Job-Id"] == job["id"], again.text
    assert int(again.headers["Upload-Offset"]) == len(audio)
    assert code(patch(c, url, 0, audio)) == "upload_offset_mismatch"
    # Not media: the last PATCH answers as a refused upload does, and the upload is gone.
    text = b"hello, this is not audio at all\n" * 100
    url = create(c, len(text), job="")
    r = patch(c, url, 0, text)
    assert r.status_code == 415 and code(r) == "unsupported_media"
    assert c.head(url, headers=TUS).status_code == 404
    # Bad options are refused at creation, before any byte.
    r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(num_speakers="0")})
    assert r.status_code == 422 and code(r) == "invalid_request"
    r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(task="align")})
    assert r.status_code == 422 and code(r) == "transcript_required"  # its transcript needs a multipart form


def test_creation_limits(gateway: Gateway) -> None:
    c = gateway.client
    too_big = gateway.settings.limits.max_upload_bytes + 1
    r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": str(too_big)})
    assert r.status_code == 413 and code(r) == "payload_too_large"
    assert code(c.post("/v1/uploads", headers=TUS)) == "invalid_request"  # no Upload-Length
    assert code(c.post("/v1/uploads", headers={"Upload-Length": "5"})) == "tus_version_unsupported"
    r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": "name not-base64!"})
    assert code(r) == "invalid_request"
    assert not (gateway.settings.storage.root / "uploads").exists() or not os.listdir(
        gateway.settings.storage.root / "uploads"
    )


def test_termination(gateway: Gateway) -> None:
    c = gateway.client
    url = create(c, 100)
    assert patch(c, url, 0, b"x" * 40).status_code == 204
    r = c.delete(url, headers=TUS)
    assert r.status_code == 204 and r.headers["Tus-Resumable"] == "1.0.0"
    r = c.head(url, headers=TUS)
    assert r.status_code == 404
    assert code(patch(c, url, 40, b"y")) == "upload_not_found"
    assert os.listdir(gateway.settings.storage.root / "uploads") == []


@pytest.fixture
def short_expiry(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with uploads that expire 1 s after creation."""
    limits = api_settings.limits.model_copy(update={"upload_expiry_s": 1.0})
    yield from serve(api_settings.model_copy(update={"limits": limits}), celery_app)


def test_expiry_refuses_then_retention_removes(short_expiry: Gateway) -> None:
    gw, c = short_expiry, short_expiry.client
    url = create(c, 100)
    assert patch(c, url, 0, b"x" * 10).status_code == 204
    wait_until(lambda: c.head(url, headers=TUS).status_code == 410, what="the upload to expire")
    assert code(patch(c, url, 10, b"y")) == "upload_expired"
    store = UploadStore(gw.settings.storage.root)
    fresh = store.create(None, 5, {}, now_s=10**10, expiry_s=1.0)  # created "in the future": not expired

    async def sweep() -> int:
        client = aioredis.Redis.from_url(gw.settings.redis.url)
        try:
            done = await sweep_retention(
                AsyncJobStore.from_settings(client, gw.settings), Storage(store.root.parent), gw.settings
            )
            return done.expired_uploads
        finally:
            await client.aclose()

    assert asyncio.run(sweep()) == 1
    assert c.head(url, headers=TUS).status_code == 404
    assert sorted(os.listdir(store.root)) == [fresh.id]


@pytest.fixture
def keyed(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with keys required."""
    auth = AuthSettings(enabled=True, key_rate_limit="10000/minute", address_rate_limit="10000/minute")
    yield from serve(api_settings.model_copy(update={"auth": auth}), celery_app)


def test_keys_own_uploads_and_the_storage_quota_counts_them(keyed: Gateway, redis_client: redis.Redis) -> None:
    registry = KeyRegistry(keyed.settings, redis_client)
    _, alice = registry.create("alice", quotas=Quotas(max_storage_gb=1.5 * 1000 / 1e9))
    _, bob = registry.create("bob")
    a, b = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bob}"}
    c = keyed.client
    assert c.post("/v1/uploads", headers={**TUS, "Upload-Length": "10"}).status_code == 401
    url = create(c, 1000, a)
    # Without a key nothing is written (the body is never read); another key does not see it.
    r = patch(c, url, 0, b"x" * 10)
    assert r.status_code == 401 and code(r) == "unauthorized"
    assert patch(c, url, 0, b"x" * 10, b).status_code == 404
    assert c.head(url, headers={**TUS, **b}).status_code == 404
    assert c.delete(url, headers={**TUS, **b}).status_code == 404
    assert code(c.post("/v1/jobs", json={"upload_id": url.rsplit("/", 1)[1]}, headers=b)) == "upload_not_found"
    assert offset(c, url, a) == 0
    # The unfinished 1,000 bytes count against alice's 1,500-byte quota from creation on.
    r = c.post("/v1/uploads", headers={**TUS, "Upload-Length": "1000", **a})
    assert r.status_code == 429 and code(r) == "quota_exceeded" and "max_storage_gb" in r.json()["error"]["message"]
    assert create(c, 1000, b)  # bob has no quota
