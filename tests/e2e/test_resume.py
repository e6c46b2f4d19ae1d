"""Resume after a crash: kill -9 the worker mid-job, start another, the job finishes from its checkpoints.

Real processes: a gateway (with its reconciler sweeping every second) and Celery workers, real
Redis, real models. The job is cut into >= 4 chunks of 20 s. The worker is killed (SIGKILL to
its whole process group, no shutdown) once chunk 1 is checkpointed; the job's lease (6 s) runs
out, the reconciler re-enqueues it, a new worker claims it with attempt 2 and resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import TERMINAL, StatusWatcher, assert_forward_only, terminal_events
from tests.speech import long_script, make_conversation

ENV = {
    "CHUNK_BYTES": str(20 * 32_000),
    "CHUNK_OVERLAP_S": "4",
    "ASR_WINDOW_S": "10",
    "WORKER_LEASE_S": "6",
    "API_RECONCILE_INTERVAL_S": "1",
}


def _words(result: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(w["word"], w["speaker"]) for s in result["segments"] for w in s["words"]]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Any:
    s = start_service(tmp_path_factory.mktemp("resume"), redis_url, models_dir, **ENV)
    yield s
    stop_service(s)


def test_killed_worker_resumes_from_checkpoints(svc: Service, tmp_path: Path) -> None:
    wav, _ = make_conversation(tmp_path / "conv", long_script(12, seed=3))
    reference = svc.submit(wav, num_speakers=2)
    assert svc.wait(reference["id"], 600)["status"] == "succeeded"
    expected = svc.result(reference["id"]).json()
    assert expected["chunks"] >= 4

    job = svc.submit(wav, num_speakers=2)["id"]
    watcher = StatusWatcher(svc, job)
    watcher.start()
    chunks_dir = svc.storage / "jobs" / job / "chunks"
    deadline = time.monotonic() + 300
    while not (chunks_dir / "1.json").exists():
        assert time.monotonic() < deadline, "chunk 1 was never checkpointed"
        time.sleep(0.05)
    svc.kill_worker(svc.procs[0])
    killed_at = time.monotonic()
    kept = {p.name: p.stat().st_mtime_ns for p in chunks_dir.glob("[0-9]*.json")}
    assert {"0.json", "1.json"} <= set(kept)

    svc.start_worker()
    final = svc.wait(job, 600)
    done_at = time.monotonic()
    seen = watcher.finish()
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 2

    # Chunks finished before the kill were not recomputed: same files, written by attempt 1.
    for name, mtime in kept.items():
        p = chunks_dir / name
        assert p.stat().st_mtime_ns == mtime, f"{name} was rewritten"
        assert json.loads(p.read_text())["attempt"] == 1
    later = [p for p in chunks_dir.glob("[0-9]*.json") if p.name not in kept]
    assert later and all(json.loads(p.read_text())["attempt"] == 2 for p in later)

    # The event log says the same: attempt 2 reused chunks 0 and 1 and computed the rest.
    events = svc.events(job)
    starts = [i for i, e in enumerate(events) if e.event == "started"]
    assert [events[i].data["attempt"] for i in starts] == [1, 2]
    after = events[starts[1] :]
    reused = {e.data["chunk"] for e in after if e.data.get("checkpoint") == "reused"}
    saved = {e.data["chunk"] for e in after if e.data.get("checkpoint") == "saved"}
    assert {0, 1} <= reused and not ({0, 1} & saved)
    percents = [e.data["percent"] for e in events if e.event == "progress"]
    assert percents == sorted(percents), "percent never decreases, across the crash too"
    assert "running" in seen, seen
    assert_forward_only(seen)  # never running -> queued

    # Exactly once: one terminal event (SSE and stream), one finish counted, one terminal record.
    assert [e.event for e in events if e.event in TERMINAL] == ["succeeded"]
    assert len(terminal_events(svc, job)) == 1
    final_json = json.loads((svc.storage / "jobs" / job / "final.json").read_text())
    assert (final_json["status"], final_json["attempt"]) == ("succeeded", 2)

    # Same words, same speakers as the run without a crash.
    got = svc.result(job).json()
    assert _words(got) == _words(expected)
    assert got["speakers"] == expected["speakers"]
    assert not (svc.storage / "jobs" / job / "work").exists(), "decoded audio removed at the end"
    print(f"\n[kill -9 worker] job done {done_at - killed_at:.0f} s after the kill (new worker boot included); "
          f"attempt 2; chunks reused {sorted(reused)}; statuses {seen}")  # fmt: skip
