"""Worker faults with real processes: a killed pool process, a poison file, a too-short visibility
timeout, SIGTERM mid-job, and a soak of 100 jobs under repeated kill -9 (the whole-worker kill -9
is `test_resume.py`).

Every test runs a real gateway (with its reconciler) and real Celery workers on real Redis and the
offline models, on espeak-ng speech; each wait is bounded. Jobs are cut into 20 s chunks so a
"halfway" exists; the tests check what a client and an operator see: status, events (the Redis
stream SSE serves), the chunk checkpoints, results, and the worker logs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import (
    TERMINAL,
    StatusWatcher,
    assert_forward_only,
    broker_keys,
    checkpoints,
    chunk_done,
    job_hash,
    keys,
    log_lines,
    pool_children,
    redis_client,
    status,
    stream,
    terminal_events,
    wait_until,
    worker_ready,
)
from tests.speech import long_script, make_conversation
from whisperx_service.broker.kombu_redis import unacked_job_ids, waiting_job_ids

#: 20 s chunks (several per job), a short lease and a reconciler sweeping every second, so a job
#: whose worker died is taken up again within seconds.
CHUNKED = {"CHUNK_BYTES": str(20 * 32_000), "CHUNK_OVERLAP_S": "4", "ASR_WINDOW_S": "10"}
FAST_RECOVERY = {**CHUNKED, "WORKER_LEASE_S": "6", "API_RECONCILE_INTERVAL_S": "1", "WORKER_MAX_ATTEMPTS": "3"}
#: Options of the jobs here: transcription only (alignment and diarization are not what is tested).
FAST = {"diarize": False, "align": False}


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`long`: ~35 s of speech (>= 3 chunks); `longer`: ~2 min (>= 7 chunks, several seconds of work
    left after chunk 1 even without alignment and diarization); `short`: one sentence; `poison`: a
    short file named poison.wav."""
    d = tmp_path_factory.mktemp("audio")
    long_wav, _ = make_conversation(d / "long", long_script(6, seed=5))
    longer_wav, _ = make_conversation(d / "longer", long_script(20, seed=6))
    short_wav, _ = make_conversation(d / "short", long_script(1, seed=11))
    poison = d / "poison.wav"
    poison.write_bytes(short_wav.read_bytes())
    return {"long": long_wav, "longer": longer_wav, "short": short_wav, "poison": poison}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway + one worker that also loads the poison hook (it acts on files named *poison* only)."""
    s = start_service(
        tmp_path_factory.mktemp("faults"),
        redis_url,
        models_dir,
        worker_args=("--include", "tests.e2e.poison_hook"),
        **FAST_RECOVERY,
    )
    yield s
    stop_service(s)


def _alive_worker(svc: Service) -> subprocess.Popen[bytes]:
    workers = [p for p in svc.procs if p.args == svc.worker_cmd and p.poll() is None]
    assert len(workers) == 1, f"expected one live worker, found {len(workers)}"
    return workers[0]


def test_killed_pool_process_job_is_retried(svc: Service, audio: dict[str, Path]) -> None:
    """kill -9 of the pool process only (the worker's main process lives on and forks a new one)."""
    worker = _alive_worker(svc)
    t0 = time.monotonic()
    job = svc.submit(audio["long"], **FAST)["id"]
    watcher = StatusWatcher(svc, job)
    watcher.start()
    wait_until(lambda: chunk_done(svc, job, 1), 300, "chunk 1 checkpointed")
    (child,) = pool_children(worker)
    child.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    kept = checkpoints(svc, job)
    assert {"0.json", "1.json"} <= set(kept)

    final = svc.wait(job, 300)
    seen = watcher.finish()
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 2
    assert worker.poll() is None, "the worker's main process survived"
    assert [c.pid for c in pool_children(worker)] != [child.pid], "a new pool process replaced the killed one"
    now = checkpoints(svc, job)
    assert {n: now[n] for n in kept} == kept, "chunks finished before the kill were not recomputed"
    assert all(a == 2 for n, (_, a) in now.items() if n not in kept) and len(now) > len(kept)
    assert len(terminal_events(svc, job)) == 1
    assert_forward_only(seen)
    print(
        f"\n[pool kill] job done {time.monotonic() - t0:.0f} s after submit, "
        f"{time.monotonic() - killed_at:.0f} s after the kill; attempt {final['attempt']}; statuses {seen}"
    )


def test_poison_file_fails_after_max_attempts(svc: Service, audio: dict[str, Path]) -> None:
    """A file that kills its worker at every attempt ends `failed: worker_lost` after exactly
    WORKER_MAX_ATTEMPTS attempts; jobs queued behind it still complete."""
    worker = _alive_worker(svc)
    t0 = time.monotonic()
    poison = svc.submit(audio["poison"], **FAST)["id"]
    others = [svc.submit(audio["short"], **FAST)["id"] for _ in range(2)]

    final = svc.wait(poison, 300)
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "worker_lost", final
    assert final["attempt"] == 3 == int(svc.env["WORKER_MAX_ATTEMPTS"])
    starts = [e for e in stream(svc, poison) if e["type"] == "started"]
    assert [e["attempt"] for e in starts] == ["1", "2", "3"]
    assert len(terminal_events(svc, poison)) == 1
    record = json.loads((svc.storage / "jobs" / poison / "final.json").read_text())
    assert (record["status"], record["error_code"]) == ("failed", "worker_lost")
    took = time.monotonic() - t0
    for job in others:
        done = svc.wait(job, 300)
        assert (done["status"], done["attempt"]) == ("succeeded", 1), done
    assert worker.poll() is None
    # It is never delivered again: a while later it is still failed with 3 attempts.
    time.sleep(3 * float(svc.env["WORKER_LEASE_S"]))
    assert (status(svc, poison)["status"], status(svc, poison)["attempt"]) == ("failed", 3)
    assert len(terminal_events(svc, poison)) == 1
    print(f"\n[poison] failed worker_lost after {took:.0f} s and 3 attempts; the 2 other jobs succeeded")


# -- a visibility timeout shorter than the job ------------------------------------------------


@pytest.fixture(scope="module")
def short_visibility(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Two workers of the test-only app whose broker redelivers unacked tasks after 5 s; no reconciler."""
    s = start_service(
        tmp_path_factory.mktemp("visibility"),
        redis_url,
        models_dir,
        worker_app="tests.e2e.short_visibility_app",
        API_RECONCILE_INTERVAL_S="0",
        **CHUNKED,
    )
    second = s.start_worker()
    wait_until(lambda: worker_ready(s, second), 180, "second worker ready", interval_s=0.5)
    yield s
    stop_service(s)


def test_redelivered_copy_does_no_model_work(short_visibility: Service, audio: dict[str, Path]) -> None:
    """Redis redelivers the running job's task to the other worker every ~5 s; the lease refuses it."""
    svc = short_visibility
    job = svc.submit(audio["longer"], **FAST)["id"]
    final = svc.wait(job, 400)
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 1

    # A copy refused as `busy` met the live lease of the running attempt: it was redelivered while
    # the job ran (after the job, a copy finds it ended). Without one, this test proves nothing.
    refused = log_lines(svc, "job_not_claimed", job)
    busy = [line for line in refused if "busy" in line]
    assert busy, f"no redelivered copy came while the job ran: {refused}"
    started = log_lines(svc, "job_started", job)
    assert len(started) == 1, started
    # The copies that were refused did no model work: only the one worker that ran the job
    # logged chunks, and every checkpoint is attempt 1's.
    runners = {p.name for p in svc.logs.glob("worker*.log") if job in p.read_text() and "chunk_done" in p.read_text()}
    assert len(runners) == 1, runners
    assert {a for _, a in checkpoints(svc, job).values()} == {1}
    assert [e["attempt"] for e in stream(svc, job) if e["type"] == "started"] == ["1"]
    assert len(terminal_events(svc, job)) == 1
    with redis_client(svc) as r:
        assert r.hget(keys(svc).metrics(), "finished:succeeded") == "1"
    assert (svc.storage / "jobs" / job / "result.json").is_file()
    print(f"\n[visibility 5 s] attempt 1; {len(busy)} redelivered copies refused while it ran")


# -- SIGTERM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graceful(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Workers run by the production entry point, `whisperx-service worker`, which must remap SIGTERM
    itself (REMAP_SIGTERM is blanked here). A 2 s soft shutdown window; a 10 min lease and no
    reconciler, so a job whose worker stopped can only come back through its hand-back (released
    lease + requeued message)."""
    s = start_service(
        tmp_path_factory.mktemp("graceful"),
        redis_url,
        models_dir,
        worker_command=[str(Path(sys.executable).parent / "whisperx-service"), "worker"],
        REMAP_SIGTERM="",
        WORKER_SOFT_SHUTDOWN_S="2",
        WORKER_LEASE_S="600",
        API_RECONCILE_INTERVAL_S="0",
        **CHUNKED,
    )
    yield s
    stop_service(s)


def test_sigterm_hands_running_job_back(graceful: Service, audio: dict[str, Path]) -> None:
    """SIGTERM mid-job: within the soft window the worker stops and hands the job back; a new
    worker claims it at once (long before the lease would run out), resumes from the checkpoints."""
    svc = graceful
    worker = _alive_worker(svc)
    job = svc.submit(audio["longer"], **FAST)["id"]
    watcher = StatusWatcher(svc, job)
    watcher.start()
    wait_until(lambda: chunk_done(svc, job, 1), 300, "chunk 1 checkpointed")
    worker.send_signal(signal.SIGTERM)
    t_term = time.monotonic()
    worker.wait(60)
    stopped_s = time.monotonic() - t_term
    kept = checkpoints(svc, job)
    assert {"0.json", "1.json"} <= set(kept)

    h = job_hash(svc, job)
    assert (h["status"], h["attempt"], h["lease_expires_ms"]) == ("running", "1", "0"), h
    assert [e["attempt"] for e in stream(svc, job) if e["type"] == "released"] == ["1"]
    assert log_lines(svc, "job_released", job)
    assert not log_lines(svc, "sigterm_not_remapped"), "the entry point remapped SIGTERM"
    with redis_client(svc) as r:
        assert job in waiting_job_ids(r, broker_keys(svc), svc.env["WORKER_QUEUE"]), "its task message is back"

    t_start = time.monotonic()
    svc.start_worker()
    final = svc.wait(job, 400)
    seen = watcher.finish()
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 2
    now = checkpoints(svc, job)
    assert {n: now[n] for n in kept} == kept, "chunks finished before SIGTERM were not recomputed"
    assert all(a == 2 for n, (_, a) in now.items() if n not in kept)
    events = svc.events(job)
    starts = [i for i, e in enumerate(events) if e.event == "started"]
    assert [events[i].data["attempt"] for i in starts] == [1, 2]
    after = events[starts[1] :]
    reused = {e.data["chunk"] for e in after if e.data.get("checkpoint") == "reused"}
    saved = {e.data["chunk"] for e in after if e.data.get("checkpoint") == "saved"}
    assert {int(n.split(".")[0]) for n in kept} <= reused and not (reused & saved)
    assert [e.event for e in events if e.event in TERMINAL] == ["succeeded"]
    percents = [e.data["percent"] for e in events if e.event == "progress"]
    assert percents == sorted(percents)
    assert_forward_only(seen)
    print(
        f"\n[SIGTERM hand-back] worker stopped {stopped_s:.1f} s after SIGTERM (window 2 s); "
        f"new worker finished the job {time.monotonic() - t_start:.0f} s after its start; attempt 2; "
        f"chunks kept {sorted(kept)}"
    )


def test_sigterm_job_finishes_within_soft_window(graceful: Service, audio: dict[str, Path]) -> None:
    """SIGTERM while a short job runs, with a soft window longer than the job: it finishes there
    (attempt 1, acknowledged: its task is not delivered again), and the worker exits."""
    svc = graceful
    for p in svc.procs:
        if p.args == svc.worker_cmd and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
    worker = svc.start_worker(WORKER_SOFT_SHUTDOWN_S="40")
    wait_until(lambda: worker_ready(svc, worker), 180, "worker ready", interval_s=0.5)
    svc.wait(svc.submit(audio["short"], **FAST)["id"], 300)  # models loaded: the next job is quick
    job = svc.submit(audio["short"], **FAST)["id"]
    wait_until(lambda: status(svc, job)["status"] == "running", 120, "job running", interval_s=0.05)
    before = stream(svc, job)
    worker.send_signal(signal.SIGTERM)
    assert not [e for e in before if e["type"] in TERMINAL], "the job ended before SIGTERM: nothing tested"
    done = wait_until(lambda: (s := status(svc, job))["status"] in TERMINAL and s, 60, "job ended")
    worker.wait(90)
    assert (done["status"], done["attempt"]) == ("succeeded", 1), done
    # It ended inside the soft window: had the window closed first, the worker would have handed it
    # back (a `released` event, then attempt 2). Its events: one attempt, running on to `succeeded`.
    types = [e["type"] for e in stream(svc, job)]
    assert types[len(before) :][-1:] == ["succeeded"], types
    assert "released" not in types and [e["attempt"] for e in stream(svc, job) if e["type"] == "started"] == ["1"]
    with redis_client(svc) as r:
        assert job not in waiting_job_ids(r, broker_keys(svc), svc.env["WORKER_QUEUE"]), "acknowledged, not requeued"
        assert job not in unacked_job_ids(r, broker_keys(svc)), "acknowledged, not left unacked"
    svc.start_worker()  # leave a worker for the module's teardown
    print("\n[SIGTERM in window] job succeeded after SIGTERM, attempt 1, not redelivered")


# -- soak --------------------------------------------------------------------------------------

SOAK_JOBS = 100
SOAK_KILLS = 5
#: A bound, not a target: about 5 min on an idle 2-core machine; each kill costs a worker boot and
#: a model load (up to a minute when the machine is busy), each job a few seconds.
SOAK_DEADLINE_S = 20 * 60
#: About 2 s of speech each: the soak is about job bookkeeping under kills, not about long audio.
SOAK_PHRASES = [
    ("A", "Please call me back on Monday."),
    ("B", "The meeting moved to Tuesday."),
    ("A", "Send the report to Lisbon."),
    ("B", "We need twelve more chairs."),
    ("A", "The budget looks fine to me."),
]


@pytest.fixture(scope="module")
def soak_svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Fast recovery; a high attempt cap so that a job hit by several kills still succeeds."""
    env = {"WORKER_LEASE_S": "6", "API_RECONCILE_INTERVAL_S": "1", "WORKER_MAX_ATTEMPTS": "20"}
    s = start_service(tmp_path_factory.mktemp("soak"), redis_url, models_dir, **env)
    yield s
    stop_service(s)


@pytest.mark.soak
@pytest.mark.timeout(SOAK_DEADLINE_S + 300)
def test_soak_random_worker_kills(soak_svc: Service, tmp_path: Path) -> None:
    """100 short jobs submitted while a helper kill -9s the whole worker at random moments (5 times,
    restarting it each time), then heals: every job ends exactly once, succeeded, with one result."""
    svc = soak_svc
    rng = random.Random(int(os.environ.get("SOAK_SEED", "4")))
    clips = [make_conversation(tmp_path / f"c{i}", [turn])[0] for i, turn in enumerate(SOAK_PHRASES)]
    deadline = time.monotonic() + SOAK_DEADLINE_S
    t0 = time.monotonic()
    accepted: list[str] = []
    kills: list[tuple[float, str]] = []  # (s since start, the jobs running at the kill)
    errors: list[BaseException] = []

    def submitter() -> None:
        try:
            for i in range(SOAK_JOBS):
                accepted.append(svc.submit(clips[i % len(clips)], **FAST)["id"])
                time.sleep(rng.uniform(0.1, 1.5))
        except BaseException as e:
            errors.append(e)

    def killer() -> None:
        try:
            for k in range(SOAK_KILLS):
                worker = _alive_worker(svc)
                wait_until(lambda w=worker: worker_ready(svc, w), 240, "worker ready", interval_s=0.2)  # type: ignore[misc]
                if k % 2:  # this time with the models loaded: after the worker finished a job, mid-next-job
                    wait_until(lambda w=worker: "job_succeeded" in svc.worker_log(w), 240, "a job done", 0.2)  # type: ignore[misc]
                time.sleep(rng.uniform(0.2, 4.0))
                with redis_client(svc) as r:
                    running = ",".join(j[:8] for j in sorted(r.smembers(keys(svc).running())))
                svc.kill_worker(worker)
                kills.append((time.monotonic() - t0, running))
                svc.start_worker()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=submitter, daemon=True), threading.Thread(target=killer, daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    assert not errors, errors
    assert len(kills) == SOAK_KILLS and len(accepted) == SOAK_JOBS, (kills, len(accepted))
    healed_from = time.monotonic() - t0

    def all_ended() -> bool:
        with redis_client(svc) as r:
            p = r.pipeline()
            for job in accepted:
                p.hget(keys(svc).job(job), "status")
            return all(s in TERMINAL for s in p.execute())

    wait_until(all_ended, max(1.0, deadline - time.monotonic()), "every soak job ended", interval_s=1.0)
    took = time.monotonic() - t0

    # The set check: every accepted job ended exactly once, succeeded, with exactly one result.
    attempts: dict[str, int] = {}
    for job in accepted:
        h = job_hash(svc, job)
        assert h["status"] == "succeeded", (job, h)
        attempts[job] = int(h["attempt"])
        ends = terminal_events(svc, job)
        assert [e["type"] for e in ends] == ["succeeded"], (job, ends)
        jdir = svc.storage / "jobs" / job
        assert json.loads((jdir / "result.json").read_text())["segments"], job
        assert json.loads((jdir / "final.json").read_text())["status"] == "succeeded", job
        assert len(log_lines(svc, "job_succeeded", job)) == 1, job
    with redis_client(svc) as r:
        assert r.hget(keys(svc).metrics(), "finished:succeeded") == str(SOAK_JOBS), "no job finished twice"
        assert r.scard(keys(svc).running()) == 0
    retried = sorted(a for a in attempts.values() if a > 1)
    assert retried, "at least one kill hit a running job (else the soak tested nothing)"
    print(
        f"\n[soak] {SOAK_JOBS} jobs, {len(kills)} kills at {[round(t) for t, _ in kills]} s "
        f"(running then: {[r for _, r in kills]}); healing from {healed_from:.0f} s; all succeeded "
        f"{took:.0f} s after the start; attempts of the retried jobs: {retried}"
    )
