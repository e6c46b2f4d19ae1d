"""The stall watchdog with real processes: a pool process that hangs inside a stage while its lease
keeper goes on renewing the lease is given up after WORKER_STALL_S, and the job finishes at
attempt 2 on the pool process Celery forks in its place.

The hang is the test-only plug-in `tests/e2e/stall_hook.py` (attempt 1 sleeps at its first
`transcribe` progress point). A real gateway (its reconciler sweeping every second), a real Celery
worker on real Redis, the offline models on espeak-ng speech; each wait is bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import (
    StatusWatcher,
    assert_forward_only,
    checkpoints,
    job_hash,
    log_lines,
    pool_children,
    stream,
    terminal_events,
    wait_until,
)
from tests.metrics import wer
from tests.speech import CONVERSATION, make_conversation

#: Long enough that a stage's real steps on a busy 2-core machine (an ASR batch, a model's first
#: load is not counted) never reach it, short enough for a test.
STALL_S = 20.0
ENV = {
    "WXS_TEST_STALL_STAGE": "transcribe",
    "WORKER_STALL_S": str(STALL_S),
    "WORKER_LEASE_S": "6",
    "API_RECONCILE_INTERVAL_S": "1",
    "WORKER_MAX_ATTEMPTS": "3",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    hook = ("--include", "tests.e2e.stall_hook")
    s = start_service(tmp_path_factory.mktemp("stall"), redis_url, models_dir, worker_args=hook, **ENV)
    yield s
    stop_service(s)


def test_stalled_job_is_given_up_and_finishes_at_attempt_2(svc: Service, tmp_path: Path) -> None:
    wav, gt = make_conversation(tmp_path / "conv", CONVERSATION[:3])
    (worker,) = [p for p in svc.procs if p.args == svc.worker_cmd]
    job = svc.submit(wav, align=False, diarize=False)["id"]
    watcher = StatusWatcher(svc, job)
    watcher.start()

    # Attempt 1 reaches transcribe and hangs there; its lease keeps being renewed meanwhile.
    stuck = wait_until(
        lambda: (h := job_hash(svc, job)).get("stage") == "transcribe" and h, 300, "attempt 1 in transcribe"
    )
    assert stuck["attempt"] == "1", stuck
    owner_pid = int(stuck["lease_owner"].rsplit(":", 1)[1])
    first_lease = int(stuck["lease_expires_ms"])
    last_lease = first_lease
    deadline = time.monotonic() + STALL_S + 60.0
    while not log_lines(svc, "job_stalled", job):
        h = job_hash(svc, job)
        assert h["attempt"] == "1" and h["stage"] == "transcribe", h
        last_lease = max(last_lease, int(h["lease_expires_ms"]))
        assert time.monotonic() < deadline, "no job_stalled within WORKER_STALL_S + 60 s"
        time.sleep(0.2)
    lease_ms = float(svc.env["WORKER_LEASE_S"]) * 1000
    assert last_lease > first_lease + lease_ms, "the lease was renewed through the hang: the watchdog ended it"

    # The log says why the process went, and the process went (the worker's main process did not).
    (line,) = log_lines(svc, "job_stalled", job)
    stalled = json.loads(line[line.index("{") :])
    assert (stalled["attempt"], stalled["stage"], stalled["chunk"]) == (1, "transcribe", 0), stalled
    assert stalled["idle_s"] >= STALL_S and stalled["stall_s"] == STALL_S, stalled
    wait_until(lambda: not _alive(owner_pid), 30, "the given-up pool process to exit")
    assert worker.poll() is None, "the worker's main process lives on"
    # Celery's main process saw its pool process exit with the watchdog's status (and forks another).
    wait_until(lambda: "exited with 'exitcode 70'" in svc.worker_log(worker), 30, "Celery to log the exit")

    final = svc.wait(job, 300)
    seen = watcher.finish()
    assert final["status"] == "succeeded" and final["attempt"] == 2, final
    assert [c.pid for c in pool_children(worker)] != [owner_pid]
    assert [e["attempt"] for e in stream(svc, job) if e["type"] == "started"] == ["1", "2"]
    assert [e["type"] for e in terminal_events(svc, job)] == ["succeeded"]
    # The given-up attempt wrote nothing: the checkpoint and the one success are attempt 2's.
    assert {a for _, a in checkpoints(svc, job).values()} == {2}
    (done,) = log_lines(svc, "job_succeeded", job)
    assert json.loads(done[done.index("{") :])["attempt"] == 2
    assert not [x for x in log_lines(svc, "job_finish_refused", job)], "attempt 1 never tried to end the job"
    w = wer(" ".join(t.text for t in gt), " ".join(s["text"] for s in svc.result(job).json()["segments"]))
    assert w <= 0.10, f"WER {w:.3f}"
    assert_forward_only(seen)
    print(f"\n[stall] given up after {stalled['idle_s']} s without progress (limit {STALL_S} s); attempt 2 WER {w:.3f}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
