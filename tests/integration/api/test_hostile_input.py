"""Hostile uploads against the real gateway (uvicorn in a thread), real Redis and real ffprobe.

Each case asserts the status, the error code, and that nothing was created or left behind: no job
directory, no file under the storage root, no job key in Redis, no task message. The hostile files
are made here at run time (ffmpeg, plain bytes); no media is committed.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import magic
import pytest
import redis
from celery import Celery

from tests.hostile_media import concat_list, hls_playlist
from tests.integration.api.conftest import TEST_MAX_UPLOAD, Gateway, queued_job_ids, serve, wav_bytes
from whisperx_service.api.multipart_form import media_type_allowed
from whisperx_service.config import LimitsSettings, Settings, StorageSettings

#: Idle limit (s) of the gateway in these tests: short, so an idle client is dropped soon.
IDLE_S = 1.0
#: Longest audio (s) the gateway in these tests accepts.
MAX_DURATION_S = 60.0


@pytest.fixture
def strict(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with a short idle limit and a short duration limit."""
    limits = LimitsSettings(
        max_upload_bytes=TEST_MAX_UPLOAD,
        max_form_field_bytes=4096,
        max_duration_s=MAX_DURATION_S,
        upload_idle_timeout_s=IDLE_S,
    )
    yield from serve(api_settings.model_copy(update={"limits": limits}), celery_app)


def _nothing_left(gateway: Gateway, r: redis.Redis) -> None:
    root = gateway.settings.storage.root
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
    assert files == []
    assert gateway.job_dirs() == []
    assert r.keys("wxs:job:*") == []
    assert r.zcard("wxs:jobs") == 0
    assert queued_job_ids(r, gateway.settings) == []


def _error(r: httpx.Response, status: int, code: str, gateway: Gateway) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    _assert_clean_message(error["message"], gateway)


def _assert_clean_message(message: str, gateway: Gateway) -> None:
    """No server path, tool output or exception text in a client-facing message."""
    assert str(gateway.settings.storage.root) not in message
    for leak in ("/tmp", "/work", "ffprobe", "ffmpeg", "Errno", "Traceback", "Invalid data", "@ 0x", "whitelist"):
        assert leak not in message, message


def _raw(gateway: Gateway, head: bytes, body: bytes, *, wait_s: float = 30.0) -> bytes:
    """Send `head` + `body` on a raw socket, then read the reply until the server closes."""
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head + body)
        s.settimeout(wait_s)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
            if b"\r\n\r\n" in reply and reply.rstrip().endswith(b"}}"):
                break
    return reply


def _part_head(boundary: str, filename: str = "a.wav") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()


def _post_file(gateway: Gateway, name: str, data: bytes) -> httpx.Response:
    return gateway.client.post("/v1/jobs", files={"file": (name, data, "audio/wav")})


def test_chunked_crlf_flood_is_cut_at_the_body_limit(strict: Gateway, redis_client: redis.Redis) -> None:
    port = int(strict.url.rsplit(":", 1)[1])
    block = b"\r\n" * 32768
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    cap = 32 * TEST_MAX_UPLOAD  # "endless": far past the limit; the gateway must stop reading first
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n"
        )
        try:
            while sent < cap:
                s.sendall(chunk)
                sent += len(block)
        except OSError:  # the gateway answered and closed the connection
            pass
        reply = s.recv(65536)
    assert sent < cap
    assert reply.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b'"code":"payload_too_large"' in reply and b"connection: close" in reply
    _nothing_left(strict, redis_client)


@pytest.mark.parametrize("length", [71, 300], ids=["71-chars", "300-chars"])
def test_boundary_over_70_characters_answers_400(strict: Gateway, redis_client: redis.Redis, length: int) -> None:
    boundary = "b" * length
    body = _part_head(boundary) + wav_bytes() + f"\r\n--{boundary}--\r\n".encode()
    r = strict.client.post(
        "/v1/jobs", content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    _error(r, 400, "malformed_multipart", strict)
    _nothing_left(strict, redis_client)


def test_idle_client_gets_408_and_leaves_nothing(strict: Gateway, redis_client: redis.Redis) -> None:
    # Chunked: the part header and half a WAV, then nothing.
    part = _part_head("b0undary") + wav_bytes(1.0)[:8000]
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n\r\n"
    )
    reply = _raw(strict, head, f"{len(part):x}\r\n".encode() + part + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b'"code":"upload_timeout"' in reply
    _nothing_left(strict, redis_client)


def test_content_length_larger_than_the_body_times_out(strict: Gateway, redis_client: redis.Redis) -> None:
    boundary = "b0undary"
    body = _part_head(boundary) + wav_bytes(1.0)[:8000]  # cut mid-file; the rest never comes
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"
        + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
        + f"Content-Length: {len(body) + 40000}\r\n\r\n".encode()
    )
    reply = _raw(strict, head, body)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b'"code":"upload_timeout"' in reply
    _nothing_left(strict, redis_client)


@pytest.mark.parametrize(
    ("make", "nul"),
    [(concat_list, False), (concat_list, True), (hls_playlist, False), (hls_playlist, True)],
    ids=["concat", "concat-nul", "hls", "hls-nul"],
)
def test_playlists_disguised_as_audio_are_refused(
    strict: Gateway, redis_client: redis.Redis, tmp_path: Path, make: object, nul: bool
) -> None:
    target = tmp_path / "real.wav"  # a real file the list points at: ffmpeg would follow it
    target.write_bytes(wav_bytes(1.0))
    assert callable(make)
    data: bytes = make(target, nul=nul)
    # With a NUL byte libmagic no longer sees text: the type check lets it through, ffprobe must not.
    assert media_type_allowed(str(magic.from_buffer(data, mime=True))) is nul
    _error(_post_file(strict, "talk.wav", data), 415, "unsupported_media", strict)
    _nothing_left(strict, redis_client)


def test_duration_bomb_answers_413(strict: Gateway, redis_client: redis.Redis, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.flac"  # ten minutes of silence: a few KiB of FLAC
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "600", str(bomb)],
        check=True,
        timeout=120,
    )
    assert bomb.stat().st_size < 512 * 1024
    _error(_post_file(strict, "bomb.flac", bomb.read_bytes()), 413, "audio_too_long", strict)
    _nothing_left(strict, redis_client)


def test_file_that_is_not_media_is_refused(strict: Gateway, redis_client: redis.Redis) -> None:
    data = os.urandom(64 * 1024)  # libmagic: application/octet-stream, so ffprobe decides
    assert media_type_allowed(str(magic.from_buffer(data, mime=True)))
    _error(_post_file(strict, "noise.wav", data), 415, "unsupported_media", strict)
    _nothing_left(strict, redis_client)


def test_audio_without_an_audio_stream_is_refused(strict: Gateway, redis_client: redis.Redis, tmp_path: Path) -> None:
    video = tmp_path / "silent.mkv"  # a video with no audio at all
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", str(video)],
        check=True,
        timeout=120,
    )
    _error(_post_file(strict, "silent.mkv", video.read_bytes()), 415, "unsupported_media", strict)
    _nothing_left(strict, redis_client)


def test_upload_refused_before_it_starts_when_storage_is_low(
    api_settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    storage = StorageSettings(root=api_settings.storage.root, min_free_bytes=2**62)  # more than any disk
    for gw in serve(api_settings.model_copy(update={"storage": storage}), celery_app):
        _error(_post_file(gw, "a.wav", wav_bytes()), 507, "insufficient_storage", gw)
        _nothing_left(gw, redis_client)


def test_error_messages_carry_no_server_path(strict: Gateway, redis_client: redis.Redis, tmp_path: Path) -> None:
    target = tmp_path / "real.wav"
    target.write_bytes(wav_bytes(1.0))
    answers = [
        _post_file(strict, "list.wav", concat_list(target, nul=True)),
        _post_file(strict, "noise.wav", os.urandom(4096)),
        _post_file(strict, "notes.wav", b"just some words\n" * 300),
        strict.client.post("/v1/jobs", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}),
    ]
    for r in answers:
        assert 400 <= r.status_code < 500, r.text
        _assert_clean_message(r.json()["error"]["message"], strict)
        assert str(target) not in r.text
    _nothing_left(strict, redis_client)
