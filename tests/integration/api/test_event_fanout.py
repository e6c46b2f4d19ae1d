"""Event streams at scale: 1,000 streams on one job share one Redis reader, each gets every event in
order, and other requests answer normally meanwhile; the per-key and total stream caps (429).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest
import redis
from celery import Celery

from tests.integration.api.conftest import Gateway, serve, wait_until, wav_bytes
from tests.sse import SseEvent, aiter_sse
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.config import AuthSettings, Settings
from whisperx_service.domain.jobs import JobStatus, Stage
from whisperx_service.store.jobs import JobStore

STREAMS = 1000
STEPS = 5


def _metric(gateway: Gateway, name: str, headers: dict[str, str] | None = None) -> float:
    for line in gateway.client.get("/metrics", headers=headers or {}).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def _blocked_xreads(r: redis.Redis, db: int) -> int:
    """Clients of database `db` blocked in XREAD now (the gateway's job readers)."""
    clients = r.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread" and c.get("db") == str(db) and "b" in c.get("flags", ""))


class _Watchers(threading.Thread):
    """`n` concurrent event streams of one job on one asyncio loop; each stream's events in `received`."""

    def __init__(self, url: str, job_id: str, n: int, last_event_id: str | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.job_id, self.n = url, job_id, n
        self.headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self.received: list[list[SseEvent]] = [[] for _ in range(n)]
        self.errors: list[BaseException] = []

    async def _one(self, client: httpx.AsyncClient, i: int) -> None:
        async for event in aiter_sse(client, f"/v1/jobs/{self.job_id}/events", headers=self.headers):
            self.received[i].append(event)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            results = await asyncio.gather(*(self._one(client, i) for i in range(self.n)), return_exceptions=True)
        self.errors = [r for r in results if isinstance(r, BaseException)]

    def run(self) -> None:
        asyncio.run(self._main())

    def streams_with(self, k: int) -> int:
        """Streams that have received at least `k` events."""
        return sum(1 for events in self.received if len(events) >= k)


@pytest.fixture
def many_settings(api_settings: Settings) -> Settings:
    """API settings whose address rate limit lets one address open the streams and side requests."""
    return api_settings.model_copy(update={"auth": AuthSettings(enabled=False, address_rate_limit="100000/minute")})


@pytest.fixture
def gw(many_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with a high address rate limit."""
    yield from serve(many_settings, celery_app)


def test_a_thousand_streams_share_one_reader_and_each_gets_every_event(
    gw: Gateway, redis_client: redis.Redis, many_settings: Settings, worker_store: JobStore
) -> None:
    submitted = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    job_id = submitted.json()["id"]
    watchers = _Watchers(gw.url, job_id, STREAMS)
    watchers.start()
    wait_until(lambda: watchers.streams_with(2) == STREAMS, timeout_s=120, what="every stream's snapshot and queued")
    assert _metric(gw, "wxs_sse_clients") == STREAMS
    assert _metric(gw, "wxs_sse_job_readers") == 1
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    wait_until(lambda: _blocked_xreads(redis_client, db) == 1, what="the job's one reader to block in XREAD")

    # Side requests answer normally while the streams are open.
    assert gw.client.get("/healthz").status_code == 200
    status = gw.client.get(f"/v1/jobs/{job_id}")
    assert status.status_code == 200 and status.json()["status"] == "queued"
    other = gw.client.post("/v1/jobs", files={"file": ("b.wav", wav_bytes(), "audio/wav")})
    assert other.status_code == 202, other.text
    assert gw.client.get(f"/v1/jobs/{other.json()['id']}").status_code == 200

    claim = worker_store.claim(job_id, "test-worker", lease_s=60)
    for i in range(1, STEPS + 1):
        assert worker_store.progress(job_id, claim.attempt, Stage.transcribe, 100.0 * i / STEPS, chunk=i, chunks=STEPS)
        assert gw.client.get("/healthz").status_code == 200
    assert worker_store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)
    watchers.join(90)
    assert not watchers.is_alive(), "some streams did not close after the terminal event"
    assert watchers.errors == []

    stored = [event_id for event_id, _ in worker_store.events(job_id)]
    expected_kinds = ["snapshot", "queued", "started", *["progress"] * STEPS, "succeeded"]
    for events in watchers.received:
        assert [e.event for e in events] == expected_kinds
        assert [e.id for e in events] == ["0-0", *stored]
        assert [e.data.get("percent") for e in events if e.event == "progress"] == [20.0, 40.0, 60.0, 80.0, 100.0]
    wait_until(lambda: _metric(gw, "wxs_sse_clients") == 0, what="the stream count to drop")
    wait_until(lambda: _metric(gw, "wxs_sse_job_readers") == 0, what="the reader to stop")


@pytest.fixture
def capped_settings(api_settings: Settings) -> Settings:
    """Keys required; 2 streams per key and 3 in all."""
    return api_settings.model_copy(
        update={
            "auth": AuthSettings(enabled=True, key_rate_limit="1000/minute", address_rate_limit="2000/minute"),
            "limits": api_settings.limits.model_copy(update={"sse_max_streams_per_key": 2, "sse_max_streams": 3}),
        }
    )


@pytest.fixture
def capped(capped_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with keys required and the small stream caps."""
    yield from serve(capped_settings, celery_app)


def _refused(r: httpx.Response) -> bool:
    """A 429 `too_many_streams` answer that says when to retry."""
    return r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams" and "retry-after" in r.headers


def test_streams_are_capped_per_key_and_in_all(
    capped: Gateway, capped_settings: Settings, redis_client: redis.Redis
) -> None:
    registry = KeyRegistry(capped_settings, redis_client)
    alice = {"Authorization": f"Bearer {registry.create('alice')[1]}"}
    bob = {"Authorization": f"Bearer {registry.create('bob')[1]}"}
    admin = {"Authorization": f"Bearer {registry.create('ops', admin=True)[1]}"}
    ids = {}
    for name, key in (("alice", alice), ("bob", bob)):
        r = capped.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers=key)
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]

    def events(key: dict[str, str], job: str) -> contextlib.AbstractContextManager[httpx.Response]:
        return capped.client.stream("GET", f"/v1/jobs/{job}/events", headers=key)

    with contextlib.ExitStack() as open_streams:
        for _ in range(2):
            assert open_streams.enter_context(events(alice, ids["alice"])).status_code == 200
        assert _refused(capped.client.get(f"/v1/jobs/{ids['alice']}/events", headers=alice))  # per key
        assert open_streams.enter_context(events(bob, ids["bob"])).status_code == 200
        assert _refused(capped.client.get(f"/v1/jobs/{ids['bob']}/events", headers=bob))  # in all
        # Refusals hold no slot; other routes answer as usual.
        assert _metric(capped, "wxs_sse_clients", admin) == 3
        assert capped.client.get(f"/v1/jobs/{ids['bob']}", headers=bob).status_code == 200
    # Closed streams give their slots back.
    wait_until(lambda: _metric(capped, "wxs_sse_clients", admin) == 0, what="the closed streams to be released")
    with events(bob, ids["bob"]) as r1, events(bob, ids["bob"]) as r2:
        assert r1.status_code == r2.status_code == 200


def test_streams_joining_a_running_reader_from_old_ids_get_every_later_event_once(
    gw: Gateway, worker_store: JobStore
) -> None:
    """Backlogs beyond the reader's history (XRANGE pages) and within it (memory) meet the live events."""
    submitted = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    job_id = submitted.json()["id"]
    claim = worker_store.claim(job_id, "test-worker", lease_s=60)
    total = 700  # more than the reader's history (256) and than one XRANGE page (500)
    for i in range(1, total + 1):
        worker_store.progress(job_id, claim.attempt, Stage.transcribe, 100.0 * i / (total + 50), chunk=i, chunks=total)
    first = _Watchers(gw.url, job_id, 1)
    first.start()  # starts the job's reader
    wait_until(lambda: first.streams_with(total + 3) == 1, what="the first stream's backlog")
    stored = [event_id for event_id, _ in worker_store.events(job_id)]
    cuts = [stored[0], stored[100], stored[-200], stored[-1]]  # beyond the history, within it, the newest
    resumed = [_Watchers(gw.url, job_id, 1, last_event_id=cut) for cut in cuts]
    for w in resumed:
        w.start()
    for w, cut in zip(resumed, cuts, strict=True):
        wait_until(lambda w=w, cut=cut: w.streams_with(len(stored) - stored.index(cut) - 1) == 1, what=f"after {cut}")
    for i in range(total + 1, total + 11):
        worker_store.progress(job_id, claim.attempt, Stage.transcribe, 100.0 * i / (total + 50), chunk=i, chunks=total)
    assert worker_store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)
    for w in [first, *resumed]:
        w.join(30)
        assert not w.is_alive() and w.errors == []
    stored = [event_id for event_id, _ in worker_store.events(job_id)]
    assert [e.id for e in first.received[0]] == ["0-0", *stored]
    for w, cut in zip(resumed, cuts, strict=True):
        assert [e.id for e in w.received[0]] == stored[stored.index(cut) + 1 :], f"resumed after {cut}"
