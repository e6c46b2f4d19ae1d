"""DELETE /v1/jobs/{id} (cancel, purge) and GET /v1/jobs (list) on a real gateway and real Redis.

The worker's part is played through the real sync `JobStore` (claim / renew / finish) and the
worker's own `LeaseKeeper` and `ProgressPublisher`, exactly as a worker process uses them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime

import pytest
import redis

from tests.integration.api.conftest import Gateway, wait_until
from whisperx_service.domain.jobs import JobOptions, JobStatus, Stage
from whisperx_service.storage.local import Storage
from whisperx_service.store import queries as jobs_module
from whisperx_service.store.cursor import encode_cursor
from whisperx_service.store.jobs import JobStore, Renewal
from whisperx_service.store.keys import Keys
from whisperx_service.worker.lease import LeaseKeeper
from whisperx_service.worker.progress import JobCancelled, ProgressPublisher

KEYS = Keys()


def _types(store: JobStore, job_id: str) -> list[str]:
    return [f["type"] for _, f in store.events(job_id)]


def _finish(store: JobStore, job_id: str, status: JobStatus = JobStatus.succeeded) -> None:
    """Play a worker that ran the job to the end."""
    claim = store.claim(job_id, "w-test", lease_s=60)
    assert claim.outcome == "claimed"
    assert store.finish(job_id, status, attempt=claim.attempt)


def test_cancel_queued_job_ends_it_at_once_and_it_never_starts(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job = submit()
    r = gateway.client.delete(f"/v1/jobs/{job}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["attempt"] == 0 and body["finished_at"]
    assert gateway.client.get(f"/v1/jobs/{job}").json()["status"] == "cancelled"
    assert _types(worker_store, job) == ["queued", "cancelled"]
    final = json.loads(Storage(gateway.settings.storage.root).final(job).read_text())
    assert final["status"] == "cancelled" and final["attempt"] == 0
    assert datetime.fromisoformat(final["finished_at"]) == datetime.fromisoformat(body["finished_at"])
    assert worker_store.r.zscore(KEYS.finished(), job) is not None  # in the retention index

    # Its task message is still queued: the worker that takes it finds the job ended and never starts it.
    claim = worker_store.claim(job, "w-test", lease_s=60)
    assert (claim.outcome, claim.status) == ("terminal", "cancelled")
    assert "started" not in _types(worker_store, job)

    again = gateway.client.delete(f"/v1/jobs/{job}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"


def test_cancel_running_job_asks_its_worker_which_ends_it(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job = submit()
    claim = worker_store.claim(job, "w-test", lease_s=60)
    assert claim.outcome == "claimed"
    assert worker_store.renew(job, claim.attempt, 60) is Renewal.renewed

    r = gateway.client.delete(f"/v1/jobs/{job}")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    assert gateway.client.delete(f"/v1/jobs/{job}").status_code == 202  # asking again changes nothing
    assert _types(worker_store, job).count("cancelling") == 1
    assert worker_store.renew(job, claim.attempt, 60) is Renewal.cancel_requested
    assert worker_store.renew(job, claim.attempt + 1, 60) is Renewal.lost  # fencing still holds

    # A running job's data cannot be purged.
    p = gateway.client.delete(f"/v1/jobs/{job}", params={"purge": "true"})
    assert p.status_code == 409 and p.json()["error"]["code"] == "job_running"

    assert worker_store.finish(job, JobStatus.cancelled, attempt=claim.attempt)
    assert gateway.client.get(f"/v1/jobs/{job}").json()["status"] == "cancelled"
    assert _types(worker_store, job)[-2:] == ["cancelling", "cancelled"]
    done = gateway.client.delete(f"/v1/jobs/{job}")
    assert done.status_code == 409 and done.json()["error"]["code"] == "job_finished"


def test_worker_pieces_stop_the_job_at_the_next_progress_point(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    """The task's LeaseKeeper sees the cancel in its renewal; the next progress call raises JobCancelled."""
    job = submit()
    attempt = worker_store.claim(job, "w-test", lease_s=60).attempt
    keeper = LeaseKeeper(worker_store, job, attempt, lease_s=60, poll_s=0.05)
    publisher = ProgressPublisher(worker_store, job, attempt, JobOptions(), 0.0, keeper.cancel)
    keeper.start()
    try:
        publisher(Stage.transcribe, 10.0)  # not cancelled: publishes
        assert gateway.client.delete(f"/v1/jobs/{job}").status_code == 202
        wait_until(keeper.cancel.is_set, 10, "the lease keeper to see the cancel")
        with pytest.raises(JobCancelled):
            publisher(Stage.transcribe, 10.0)  # throttled (same step, same percent): still checked
    finally:
        keeper.stopped.set()
        keeper.join(5)
    assert not keeper.lost


def test_purge_removes_files_and_state_then_the_job_is_unknown(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore, redis_client: redis.Redis
) -> None:
    job, other = submit(), submit()
    _finish(worker_store, job)
    assert (gateway.jobs_dir / job).is_dir()

    r = gateway.client.delete(f"/v1/jobs/{job}", params={"purge": "true"})
    assert r.status_code == 204 and r.content == b""
    assert not (gateway.jobs_dir / job).exists()
    assert not redis_client.exists(KEYS.job(job), KEYS.events(job))
    assert redis_client.zscore(KEYS.jobs_index(), job) is None
    assert redis_client.zscore(KEYS.finished(), job) is None
    assert not redis_client.sismember(KEYS.running(), job)
    for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/events", f"/v1/jobs/{job}/result"):
        assert gateway.client.get(path).status_code == 404, path
    assert gateway.client.delete(f"/v1/jobs/{job}").status_code == 404
    assert [j["id"] for j in gateway.client.get("/v1/jobs").json()["jobs"]] == [other]
    assert (gateway.jobs_dir / other).is_dir()  # nothing else touched

    # Purging a queued job cancels it first; its task message then finds nothing to run.
    r = gateway.client.delete(f"/v1/jobs/{other}", params={"purge": "true"})
    assert r.status_code == 204
    assert gateway.client.get(f"/v1/jobs/{other}").status_code == 404
    assert gateway.job_dirs() == []
    assert worker_store.claim(other, "w-test", lease_s=60).outcome == "missing"


def _ids(gateway: Gateway, **params: str | int) -> tuple[list[list[str]], list[str | None]]:
    """Walk every page; returns the ids per page and each page's next_cursor."""
    pages: list[list[str]] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    for _ in range(50):
        q = {**params, **({"cursor": cursor} if cursor else {})}
        r = gateway.client.get("/v1/jobs", params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([j["id"] for j in body["jobs"]])
        cursors.append(body["next_cursor"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages, cursors
    raise AssertionError("the list never ended")


def test_list_pages_newest_first_with_ties_never_skip_or_repeat(
    gateway: Gateway, submit: Callable[..., str], redis_client: redis.Redis
) -> None:
    ids = [submit() for _ in range(7)]
    # Equal creation times: three jobs in one ms, two in another, two in a third.
    scores = [1000, 1000, 1000, 2000, 2000, 3000, 3000]
    redis_client.zadd(KEYS.jobs_index(), dict(zip(ids, scores, strict=True)), xx=True)
    expected = [i for _, i in sorted(zip(scores, ids, strict=True), reverse=True)]

    for limit in (1, 2, 3, 7, 8):
        pages, cursors = _ids(gateway, limit=limit)
        assert [i for p in pages for i in p] == expected, limit
        assert all(len(p) == limit for p in pages[:-1]) and cursors[-1] is None
        assert len(pages) == -(-7 // limit), "no empty last page when the jobs fill the pages exactly"

    # Jobs added and removed between pages shift nothing: the cursor is a position.
    first = gateway.client.get("/v1/jobs", params={"limit": 3}).json()
    assert [j["id"] for j in first["jobs"]] == expected[:3]
    newest = submit()
    gateway.client.delete(f"/v1/jobs/{expected[4]}", params={"purge": "true"})
    rest = gateway.client.get("/v1/jobs", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [expected[3], *expected[5:]]
    assert gateway.client.get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]["id"] == newest

    # Records are full job records.
    rec = gateway.client.get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]
    assert rec["status"] == "queued" and rec["filename"] == "a.wav" and "options" in rec


def test_list_filters_by_status(
    gateway: Gateway,
    submit: Callable[..., str],
    worker_store: JobStore,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done, running, q1, q2 = ids = [submit() for _ in range(4)]
    redis_client.zadd(KEYS.jobs_index(), {j: 1000 + n for n, j in enumerate(ids)}, xx=True)  # distinct ms
    _finish(worker_store, done)
    assert worker_store.claim(running, "w-test", lease_s=60).outcome == "claimed"

    assert _ids(gateway, status="queued", limit=1)[0] == [[q2], [q1]]
    assert _ids(gateway, status="running")[0] == [[running]]
    assert _ids(gateway, status="succeeded")[0] == [[done]]
    assert _ids(gateway, status="cancelled")[0] == [[]]

    # A filter that matches little examines at most LIST_SCAN_MAX entries per request: short pages
    # whose cursor goes on where the scan stopped, and nothing is skipped.
    monkeypatch.setattr(jobs_module, "LIST_SCAN_MAX", 2)
    monkeypatch.setattr(jobs_module, "LIST_BATCH", 2)
    pages, cursors = _ids(gateway, status="succeeded")
    assert [i for p in pages for i in p] == [done] and pages[0] == [] and cursors[0] is not None


def test_bad_list_queries_are_422_with_stable_codes(gateway: Gateway, submit: Callable[..., str]) -> None:
    submit()
    fake = encode_cursor(int(time.time() * 1000), "f" * 32)  # well formed, names no job: fine
    assert gateway.client.get("/v1/jobs", params={"cursor": fake}).status_code == 200
    for cursor in ("nope", "bm9wZQ", encode_cursor(5, "xyz"), "!!!!"):
        r = gateway.client.get("/v1/jobs", params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", cursor
    for params in ({"status": "done"}, {"limit": 0}, {"limit": 501}, {"limit": "x"}):
        r = gateway.client.get("/v1/jobs", params=params)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", params


def test_cancel_unknown_job_is_404(gateway: Gateway) -> None:
    for q in ({}, {"purge": "true"}):
        r = gateway.client.delete(f"/v1/jobs/{'0' * 32}", params=q)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"


def test_concurrent_cancels_of_a_queued_job_end_it_once(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job = submit()
    codes: list[int] = []

    def cancel() -> None:
        codes.append(gateway.client.delete(f"/v1/jobs/{job}").status_code)

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(codes) == [200] + [409] * 5
    assert _types(worker_store, job).count("cancelled") == 1
