"""A job submitted with `url`, against the real gateway and Redis, no outbound worker: its Redis life.

Created `queued` on the outbound schedule (`fetch:<id>`), not held for the dispatcher, and left
alone by the reconciler however long it waits; the fetch's writes (`store/fetches.py`) are fenced
by the try; `fetched` holds it for the dispatcher, which hands it to the GPU queue like an upload.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from tests.integration.api.conftest import Gateway, serve
from tests.integration.api.test_reconciler import KEYS, dispatch, queued_ids, run_sweep
from whisperx_service.config import ApiSettings, Settings
from whisperx_service.store.fetches import FetchStore


@pytest.fixture
def rec_settings(api_settings: Settings) -> Settings:
    """API test settings with the gateway's reconciler and dispatcher loops off (run here by hand)."""
    return api_settings.model_copy(
        update={"api": ApiSettings(sse_block_ms=200, sse_ping_s=0.3, reconcile_interval_s=0, dispatch_interval_s=0)}
    )


@pytest.fixture
def gw(rec_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    yield from serve(rec_settings, celery_app)


def _submit(gw: Gateway, **fields: str) -> str:
    r = gw.client.post("/v1/jobs", json={"url": "https://example.org/media/talk%20one.mp3?sig=x", **fields})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_a_url_job_waits_on_the_schedule_until_fetched(
    gw: Gateway, redis_client: redis.Redis, rec_settings: Settings, celery_app: Celery
) -> None:
    job = _submit(gw, language="en")
    h = {k.decode(): v.decode() for k, v in redis_client.hgetall(KEYS.job(job)).items()}
    assert (h["status"], h["fetching"], h["filename"]) == ("queued", "1", "talk one.mp3")
    assert h["source_url"] == "https://example.org/media/talk%20one.mp3?sig=x"
    assert redis_client.zscore(KEYS.outbound_due(), f"fetch:{job}") is not None
    assert redis_client.lrange(KEYS.pending("-"), 0, -1) == []
    manifest = (rec_settings.storage.root / "jobs" / job / "job.json").read_text()
    assert "example.org" not in manifest  # the URL (it may carry a signature) stays out of storage

    assert dispatch(rec_settings, celery_app).handed == []
    out = run_sweep(rec_settings, celery_app, now_s=time.time() + 600)
    assert (out.queued_requeued, out.held_again) == ([], [])
    assert queued_ids(redis_client, rec_settings) == []

    fetches = FetchStore(redis_client, KEYS)
    first = fetches.start(job, max_attempts=2)
    assert (first.outcome, first.attempt, first.url) == ("go", 1, h["source_url"])
    second = fetches.start(job, max_attempts=2)  # the first try's worker died: its lease ran out
    assert (second.outcome, second.attempt) == ("go", 2)
    assert not fetches.progress(job, 1, 10, None, lease_ms=1000)  # the first try is fenced off
    assert fetches.progress(job, 2, 10, 20, lease_ms=1000)
    body = gw.client.get(f"/v1/jobs/{job}").json()
    assert (body["status"], body["stage"], body["fetched_bytes"]) == ("queued", "fetch", 10)
    assert not fetches.fetched(job, 1, "-", 20, 1.5)
    assert fetches.fetched(job, 2, "-", 20, 1.5)
    body = gw.client.get(f"/v1/jobs/{job}").json()
    assert (body["status"], body["size_bytes"], body["fetched_bytes"], body["duration_s"]) == ("queued", 20, 20, 1.5)
    assert redis_client.hget(KEYS.job(job), "source_url") is None
    assert redis_client.zscore(KEYS.outbound_due(), f"fetch:{job}") is None
    assert fetches.start(job, max_attempts=2).outcome == "done"
    assert not fetches.fail(job, 2, "url_unreachable", "x")  # fetched: nothing to fail
    assert dispatch(rec_settings, celery_app).handed == [job]
    assert queued_ids(redis_client, rec_settings) == [job]


def test_tries_run_out_and_a_failed_fetch_ends_the_job(gw: Gateway, redis_client: redis.Redis) -> None:
    fetches = FetchStore(redis_client, KEYS)
    job = _submit(gw)
    assert fetches.start(job, max_attempts=1).outcome == "go"
    assert fetches.start(job, max_attempts=1).outcome == "exhausted"
    assert fetches.fail(job, None, "url_unreachable", "the source URL could not be fetched")
    body = gw.client.get(f"/v1/jobs/{job}").json()
    assert body["status"] == "failed" and body["error"]["code"] == "url_unreachable"
    assert redis_client.zscore(KEYS.outbound_due(), f"fetch:{job}") is None

    cancelled = _submit(gw)
    assert gw.client.delete(f"/v1/jobs/{cancelled}").status_code == 200
    assert fetches.start(cancelled, max_attempts=3).outcome == "done"


def test_urlencoded_and_idempotent(gw: Gateway) -> None:
    form = {"url": "http://example.org/a.wav", "diarize": "false"}
    first = gw.client.post("/v1/jobs", data=form, headers={"Idempotency-Key": "k1"})
    again = gw.client.post("/v1/jobs", data=form, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = gw.client.post("/v1/jobs", data={**form, "diarize": "true"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    body = gw.client.get(f"/v1/jobs/{first.json()['id']}").json()
    assert body["options"]["diarize"] is False and body["stage"] is None
    both = gw.client.post("/v1/jobs", json={**form, "upload_id": "abc"})
    assert both.status_code == 422 and "not both" in both.json()["error"]["message"]
    neither = gw.client.post("/v1/jobs", json={"language": "en"})
    assert neither.status_code == 422 and "`url` or `upload_id`" in neither.json()["error"]["message"]
    deep = gw.client.post("/v1/jobs", content=b"[" * 5000, headers={"content-type": "application/json"})
    assert deep.status_code == 422 and deep.json()["error"]["code"] == "invalid_request", deep.text
