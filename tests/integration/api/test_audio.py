"""GET /v1/jobs/{id}/audio: the original upload, byte for byte, with HTTP Range (Starlette's
FileResponse in the pinned version: 206 + Content-Range, 416 past the end, If-Range)."""

from __future__ import annotations

import httpx

from tests.integration.api.conftest import Gateway, wav_bytes
from whisperx_service.storage.local import Storage

#: The upload of every test here: 0.5 s of 16 kHz 16-bit mono silence, 16,044 bytes.
AUDIO = wav_bytes(0.5)


def _submit(gateway: Gateway) -> str:
    r = gateway.client.post("/v1/jobs", files={"file": ("talk.wav", AUDIO, "audio/wav")})
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def test_audio_is_the_upload_as_stored_with_safe_headers(gateway: Gateway) -> None:
    job_id = _submit(gateway)
    r = gateway.client.get(f"/v1/jobs/{job_id}/audio")
    assert r.status_code == 200
    assert r.content == AUDIO
    assert r.headers["content-type"] in ("audio/x-wav", "audio/wav", "audio/vnd.wave")
    assert r.headers["content-length"] == str(len(AUDIO))
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["cache-control"] == "private, no-cache"


def test_audio_ranges(gateway: Gateway) -> None:
    job_id = _submit(gateway)
    path, size = f"/v1/jobs/{job_id}/audio", len(AUDIO)
    r = gateway.client.get(path, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-199/{size}"
    assert r.content == AUDIO[100:200]
    # An open-ended range and a suffix range (the last N bytes), as media elements send them.
    r = gateway.client.get(path, headers={"Range": f"bytes={size - 10}-"})
    assert r.status_code == 206 and r.content == AUDIO[-10:]
    assert r.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    r = gateway.client.get(path, headers={"Range": "bytes=-44"})
    assert r.status_code == 206 and r.content == AUDIO[-44:]
    # A range past the end cannot be satisfied: 416 and the size.
    r = gateway.client.get(path, headers={"Range": f"bytes={size}-{size + 10}"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    # If-Range with the current ETag gets the range; with a stale one the whole file.
    etag = gateway.client.get(path).headers["etag"]
    r = gateway.client.get(path, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert r.status_code == 206 and r.content == AUDIO[:10]
    r = gateway.client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == AUDIO


def test_audio_of_unknown_job_is_404_and_of_a_lost_file_500_with_a_code(gateway: Gateway) -> None:
    r = gateway.client.get(f"/v1/jobs/{'f' * 32}/audio")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    job_id = _submit(gateway)
    Storage(gateway.settings.storage.root).source(job_id).unlink()
    r = gateway.client.get(f"/v1/jobs/{job_id}/audio")
    assert r.status_code == 500
    body = r.json()["error"]
    assert body["code"] == "audio_missing" and str(gateway.settings.storage.root) not in body["message"]


def test_audio_streams_while_the_job_is_queued(gateway: Gateway) -> None:
    # The page plays the upload of any job it lists, finished or not.
    job_id = _submit(gateway)
    assert gateway.client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    with httpx.Client(base_url=gateway.url) as c:
        assert c.get(f"/v1/jobs/{job_id}/audio", headers={"Range": "bytes=0-3"}).content == b"RIFF"
