"""Cancellation on a real service: a gateway and one Celery worker process (concurrency 1), real models.

A long job (about 80 s of two-voice speech in 20 s chunks) runs; a short job waits behind it.
The queued one is cancelled at once and never starts. The running one is cancelled after its
first chunk is checkpointed (every model is loaded by then; a cancel during a model's first load
waits for the load to end): its worker sees the request at its next lease renewal (at most
WORKER_CANCEL_POLL_S later) and stops at the next progress point (an ASR window, an aligned
segment, a diarization step, a chunk). Its SSE stream must end with `cancelled`, with no work on
a chunk past the one running at the DELETE (or the next). Then a new job on the same worker
succeeds normally.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import broker_keys, redis_client
from tests.speech import CONVERSATION, long_script, make_conversation
from tests.sse import SseEvent, iter_sse
from whisperx_service.broker.kombu_redis import unacked_job_ids, waiting_job_ids

ENV = {
    "CHUNK_BYTES": str(20 * 32_000),  # 20 s chunks
    "CHUNK_OVERLAP_S": "4",
    "ASR_WINDOW_S": "10",
    # One ASR window per batch: a batch is one C call with no progress point inside, so it is the
    # longest span a cancel waits for (batch_size x window_s of audio); this keeps it at 10 s of audio.
    "ASR_BATCH_SIZE": "1",
    "WORKER_CANCEL_POLL_S": "2",
}


class StreamReader(threading.Thread):
    """Reads a job's SSE stream to its end in the background, keeping its events in order."""

    def __init__(self, svc: Service, job_id: str) -> None:
        super().__init__(daemon=True)
        self.url, self.path = svc.url, f"/v1/jobs/{job_id}/events"
        self.events: list[SseEvent] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, read=600.0)) as c:
            for ev in iter_sse(c, self.path):
                self.events.append(ev)

    def wait_for(self, pred: Any, timeout_s: float, what: str) -> SseEvent:
        """The first event matching `pred`, waiting up to `timeout_s` seconds."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for ev in list(self.events):
                if pred(ev):
                    return ev
            assert self.is_alive(), f"the stream ended without {what}: {[e.event for e in self.events]}"
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {timeout_s} s")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Any:
    s = start_service(tmp_path_factory.mktemp("cancel"), redis_url, models_dir, **ENV)
    yield s
    stop_service(s)


def test_cancel_queued_and_running_jobs_then_the_worker_runs_the_next(svc: Service, tmp_path: Path) -> None:
    long_wav, _ = make_conversation(tmp_path / "long", long_script(16, seed=5))
    short_wav, _ = make_conversation(tmp_path / "short", CONVERSATION[:2])
    running = svc.submit(long_wav, num_speakers=2)["id"]
    queued = svc.submit(short_wav, num_speakers=2)["id"]
    watch = StreamReader(svc, running)
    watch.start()

    with svc.client() as c:
        # The queued job: cancelled at once (the worker is busy with the first job or about to be).
        r = c.delete(f"/v1/jobs/{queued}")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and r.json()["attempt"] == 0

        # The running job: cancel once its first chunk is checkpointed.
        saved = watch.wait_for(
            lambda e: e.event == "progress" and e.data.get("checkpoint") == "saved", 600, "a checkpointed chunk"
        )
        assert saved.data["chunks"] >= 4, saved.data
        r = c.delete(f"/v1/jobs/{running}")
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
        watch.join(120)
        assert not watch.is_alive(), "the SSE stream did not end"
        events = watch.events
        kinds = [e.event for e in events]
        assert kinds[-1] == "cancelled", kinds
        assert kinds.count("cancelled") == 1 and kinds.count("cancelling") == 1 and "succeeded" not in kinds
        at = kinds.index("cancelling")
        running_chunk = [e.data["chunk"] for e in events[:at] if e.event == "progress"][-1]
        after = [e for e in events[at + 1 :] if e.event == "progress"]
        # The worker sees the request at its next lease renewal and stops at the next progress point
        # after it: nothing past the chunk that was running at the DELETE (or the one after, when the
        # request came at its very end) is worked on, and at most one more chunk is checkpointed.
        assert {e.data["chunk"] for e in after} <= {running_chunk, running_chunk + 1}, kinds[at:]
        assert sum(e.data.get("checkpoint") == "saved" for e in after) <= 1, [e.data for e in after]
        last_chunk = max(e.data.get("chunk", 0) for e in events if e.event == "progress")
        assert last_chunk < saved.data["chunks"] - 1, "it stopped before its last chunk"

        job = c.get(f"/v1/jobs/{running}").json()
        assert job["status"] == "cancelled" and job["attempt"] == 1 and job["finished_at"], job
        assert c.get(f"/v1/jobs/{running}/result").status_code == 409
        job_dir = svc.storage / "jobs" / running
        assert json.loads((job_dir / "final.json").read_text())["status"] == "cancelled"
        deadline = time.monotonic() + 30  # the worker removes it right after it ended the job
        while (job_dir / "work").exists():
            assert time.monotonic() < deadline, "the decoded audio was not removed"
            time.sleep(0.2)

        # The same worker process then runs a new job normally.
        later = svc.submit(short_wav, num_speakers=2)["id"]
        done = svc.wait(later, 600)
        assert done["status"] == "succeeded" and done["attempt"] == 1, done
        words = [w["word"] for s in svc.result(later).json()["segments"] for w in s["words"]]
        assert len(words) >= 20, words
        worker = svc.procs[0]
        assert worker.poll() is None and len(svc.procs) == 2, "one worker, never restarted"

        # The cancelled queued job never started: it was held for the dispatcher while the worker was
        # busy and dropped at its turn (had its message been sent, the claim would have found it ended).
        q = c.get(f"/v1/jobs/{queued}").json()
        assert q["status"] == "cancelled" and q["attempt"] == 0 and q["started_at"] is None
        assert [e.event for e in svc.events(queued)] == ["snapshot", "queued", "cancelled"]
        started = [line for line in svc.worker_log(worker).splitlines() if queued in line and "job_started" in line]
        assert started == [], "the cancelled job never ran"
        with redis_client(svc) as r:
            keys = broker_keys(svc)
            assert queued not in waiting_job_ids(r, keys, svc.env["WORKER_QUEUE"]) + unacked_job_ids(r, keys)

        # Cancelling a finished job is refused.
        for job_id in (later, running, queued):
            r = c.delete(f"/v1/jobs/{job_id}")
            assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished", job_id
