"""Pure parts of the reconciler: a job hash rebuilt from storage files, and kombu's queue keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

from whisperx_service.broker.kombu_redis import BrokerKeys
from whisperx_service.broker.kombu_redis import task_id as _task_id
from whisperx_service.maintenance.restore import read_stored_job
from whisperx_service.storage.local import Storage, atomic_write_json

JOB = "ab" * 16
NOW_MS = 1_800_000_000_000


def _storage(tmp_path: Path, **manifest: object) -> Storage:
    storage = Storage(tmp_path)
    storage.job_dir(JOB).mkdir(parents=True)
    data = {"id": JOB, "options": {"diarize": False}, "filename": "a.wav", "size_bytes": 7}
    data.update(created_at="2026-01-02T03:04:05.678901+00:00", **manifest)
    atomic_write_json(storage.manifest(JOB), data)
    return storage


def test_no_or_bad_manifest_is_not_a_job(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert read_stored_job(storage, JOB, NOW_MS) is None
    storage.job_dir(JOB).mkdir(parents=True)
    storage.manifest(JOB).write_text("{not json")
    assert read_stored_job(storage, JOB, NOW_MS) is None
    _storage(tmp_path / "x", options={"num_speakers": 0})  # fails JobOptions validation
    assert read_stored_job(Storage(tmp_path / "x"), JOB, NOW_MS) is None


def test_queued_when_nothing_ran(tmp_path: Path) -> None:
    job = read_stored_job(_storage(tmp_path), JOB, NOW_MS)
    assert job is not None
    assert (job.status, job.hash["attempt"], job.finished_ms) == ("queued", "0", None)
    assert job.hash["created_at"] == "2026-01-02T03:04:05.678901+00:00"
    assert job.created_ms == 1767323045678
    assert json.loads(job.hash["options"])["diarize"] is False
    assert (job.hash["filename"], job.hash["size_bytes"], job.hash["requeued_ms"]) == ("a.wav", "7", str(NOW_MS))


def test_started_job_is_running_with_an_expired_lease_and_its_highest_attempt(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    storage.work_dir(JOB).mkdir()
    assert read_stored_job(storage, JOB, NOW_MS).hash["attempt"] == "1"  # type: ignore[union-attr]
    atomic_write_json(storage.chunks_dir(JOB) / "plan.json", {"attempt": 99})  # not a checkpoint
    for i, attempt in enumerate((2, 1)):
        atomic_write_json(storage.chunks_dir(JOB) / f"{i}.json", {"attempt": attempt})
    job = read_stored_job(storage, JOB, NOW_MS)
    assert job is not None
    assert (job.status, job.hash["attempt"], job.hash["lease_expires_ms"]) == ("running", "2", "0")


def test_final_json_wins_over_result_and_checkpoints(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    atomic_write_json(storage.chunks_dir(JOB) / "0.json", {"attempt": 3})
    atomic_write_json(storage.result(JOB), {"segments": []})
    storage.write_final(
        JOB, status="failed", finished_at="2026-01-02T04:00:00+00:00", attempt=2, error_code="e", error_message="m"
    )
    job = read_stored_job(storage, JOB, NOW_MS)
    assert job is not None
    h = job.hash
    assert (job.status, h["attempt"], h["error_code"], h["error_message"]) == ("failed", "3", "e", "m")
    assert job.finished_ms == 1767326400000


def test_result_without_final_is_succeeded_at_the_result_time(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    atomic_write_json(storage.result(JOB), {"segments": []})
    os.utime(storage.result(JOB), (1767326400, 1767326400))
    job = read_stored_job(storage, JOB, NOW_MS)
    assert job is not None
    assert (job.status, job.hash["percent"], job.finished_ms) == ("succeeded", "100", 1767326400000)


def test_queue_keys_and_task_ids_follow_kombu() -> None:
    assert BrokerKeys("wxs:").queue("q") == ["wxs:q", "wxs:q\x06\x163", "wxs:q\x06\x166", "wxs:q\x06\x169"]
    assert (BrokerKeys("wxs:").unacked(), BrokerKeys("wxs:").unacked_index()) == ("wxs:unacked", "wxs:unacked_index")
    assert _task_id(json.dumps({"headers": {"id": JOB}, "properties": {}})) == JOB
    assert _task_id({"headers": {}, "properties": {"correlation_id": JOB}}) == JOB
    assert _task_id("not json") is None
