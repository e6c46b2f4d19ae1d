"""Disk full for real: the storage root is a small tmpfs, so writes fail with ENOSPC from the kernel.

Mounting needs root (CAP_SYS_ADMIN); without it these tests skip and say why. The gateway is the
real one (uvicorn in a thread) on the real test Redis; nothing is patched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.integration.api.conftest import Gateway, queued_job_ids, serve, wav_bytes
from whisperx_service.config import Settings, StorageSettings

#: Size of the tmpfs storage root (bytes).
TMPFS_BYTES = 2 * 1024 * 1024
#: Size of the tmpfs for the free-space floor test (bytes): room for several free-space checks
#: (one per FREE_CHECK_BYTES of body) between the floor and a full disk.
FLOOR_TMPFS_BYTES = 8 * 1024 * 1024
MiB = 1024 * 1024


def _free_bytes(root: Path) -> int:
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize


def _used_bytes(root: Path) -> int:
    st = os.statvfs(root)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _tmpfs(root: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted at `root` until the generator closes (skips when not allowed)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs as the storage root needs root and mount(8)")
    root.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (no CAP_SYS_ADMIN here?): {done.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, timeout=30)


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    """A TMPFS_BYTES tmpfs mounted for the test (skipped when mounting is not allowed)."""
    yield from _tmpfs(tmp_path / "small", TMPFS_BYTES)


@pytest.fixture
def floor_root(tmp_path: Path) -> Iterator[Path]:
    """A FLOOR_TMPFS_BYTES tmpfs mounted for the test (skipped when mounting is not allowed)."""
    yield from _tmpfs(tmp_path / "floor", FLOOR_TMPFS_BYTES)


@pytest.fixture
def small_gateway(api_settings: Settings, celery_app: Celery, small_root: Path) -> Iterator[Gateway]:
    """The gateway with its storage root on the small tmpfs, no free-space floor (the kernel says no)."""
    storage = StorageSettings(root=small_root, min_free_bytes=0)
    yield from serve(_no_dispatch(api_settings).model_copy(update={"storage": storage}), celery_app)


def _no_dispatch(settings: Settings) -> Settings:
    """`settings` without the dispatcher: an accepted job stays held, so no broker message of one test
    (sent from the dispatcher's thread as the gateway stops) can land in the next test's database."""
    return settings.model_copy(update={"api": settings.api.model_copy(update={"dispatch_interval_s": 0})})


def _assert_nothing_kept(gateway: Gateway, r: redis.Redis, *, keep: frozenset[str] = frozenset()) -> None:
    """No job directory, no temp or partial file anywhere under the root, no job in Redis, no message."""
    root = gateway.settings.storage.root
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in keep)
    assert left == [], left
    assert gateway.job_dirs() == []
    assert r.keys("wxs:job:*") == []
    assert r.zcard("wxs:jobs") == 0
    assert queued_job_ids(r, gateway.settings) == []


def test_upload_larger_than_the_disk_answers_507_and_frees_the_space(
    small_gateway: Gateway, redis_client: redis.Redis
) -> None:
    root = small_gateway.settings.storage.root
    used_before = _used_bytes(root)
    payload = wav_bytes(0.1)[:44] + os.urandom(2 * TMPFS_BYTES)
    r = small_gateway.client.post("/v1/jobs", files={"file": ("big.wav", payload, "audio/wav")})
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage"
    _assert_nothing_kept(small_gateway, redis_client)
    assert _used_bytes(root) == used_before  # the partial upload's blocks were given back

    # The space is free again: an upload that fits is accepted.
    r = small_gateway.client.post("/v1/jobs", files={"file": ("small.wav", wav_bytes(1.0), "audio/wav")})
    assert r.status_code == 202, r.text
    assert [p.name for p in small_gateway.job_dirs()] == [r.json()["id"]]


def test_manifest_that_no_longer_fits_answers_507_and_leaves_nothing(
    small_gateway: Gateway, redis_client: redis.Redis
) -> None:
    # Fill the disk so that the upload fits to the last byte and the manifest after it does not.
    root = small_gateway.settings.storage.root
    upload_bytes = 64 * 1024
    filler = root / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * (_free_bytes(root) - upload_bytes))
        f.flush()
        os.fsync(f.fileno())
    assert _free_bytes(root) == upload_bytes
    payload = wav_bytes(0.1)[:44] + os.urandom(upload_bytes - 44)
    r = small_gateway.client.post("/v1/jobs", files={"file": ("exact.wav", payload, "audio/wav")})
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage"
    _assert_nothing_kept(small_gateway, redis_client, keep=frozenset({"filler"}))
    assert _free_bytes(root) == upload_bytes


def test_chunked_upload_that_crosses_the_free_space_floor_is_stopped_mid_stream(
    api_settings: Settings, celery_app: Celery, floor_root: Path, redis_client: redis.Redis
) -> None:
    # A chunked body announces no length, so the check before it starts passes. The floor is 5 MiB
    # of the 8 MiB disk and the body 7 MiB: the gateway must stop it while it streams (free space is
    # checked every FREE_CHECK_BYTES), long before the kernel would run out of space.
    floor = 5 * MiB
    storage = StorageSettings(root=floor_root, min_free_bytes=floor)
    body_file = wav_bytes(0.1)[:44] + os.urandom(7 * MiB)
    boundary = "wxsfloor"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    free_seen: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield head
        for i in range(0, len(body_file), 64 * 1024):
            free_seen.append(_free_bytes(floor_root))
            yield body_file[i : i + 64 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    for gateway in serve(_no_dispatch(api_settings).model_copy(update={"storage": storage}), celery_app):
        r = gateway.client.post(
            "/v1/jobs", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage"
        # Stopped by the floor, not by the kernel: the disk kept megabytes free throughout.
        assert min(free_seen) >= 2 * MiB, free_seen
        _assert_nothing_kept(gateway, redis_client)
        assert _free_bytes(floor_root) > FLOOR_TMPFS_BYTES - 64 * 1024  # the partial upload's blocks were given back
