"""GET /v1/jobs/{id}/events: snapshot, every stored event in order, one terminal event, lossless resume."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import redis

from tests.integration.api.conftest import Gateway, wait_until
from tests.sse import SseEvent, iter_sse, stream_id
from whisperx_service.domain.jobs import JobStatus, Stage
from whisperx_service.store.jobs import JobStore


def _events(gateway: Gateway, job_id: str, headers: dict[str, str] | None = None) -> list[SseEvent]:
    return list(iter_sse(gateway.client, f"/v1/jobs/{job_id}/events", headers=headers))


def _reader(
    gateway: Gateway, job_id: str, out: list[SseEvent], headers: dict[str, str] | None = None
) -> threading.Thread:
    """A started thread appending each event to `out` as it arrives."""

    def run() -> None:
        for event in iter_sse(gateway.client, f"/v1/jobs/{job_id}/events", headers=headers):
            out.append(event)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _run_job(store: JobStore, job_id: str, steps: int = 5) -> None:
    claim = store.claim(job_id, "test-worker", lease_s=60)
    assert claim.outcome == "claimed"
    for i in range(1, steps + 1):
        assert store.progress(job_id, claim.attempt, Stage.transcribe, 100.0 * i / steps, chunk=i, chunks=steps)
    assert store.finish(job_id, JobStatus.succeeded, attempt=claim.attempt)


def _sse_clients(gateway: Gateway) -> float:
    for line in gateway.client.get("/metrics").text.splitlines():
        if line.startswith("wxs_sse_clients "):
            return float(line.split()[1])
    raise AssertionError("wxs_sse_clients missing from /metrics")


def test_live_stream_is_snapshot_then_every_event_then_one_terminal(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    received: list[SseEvent] = []
    reader = _reader(gateway, job_id, received)
    wait_until(lambda: len(received) >= 2, what="the snapshot and the queued event")
    _run_job(worker_store, job_id)
    reader.join(15)
    assert not reader.is_alive(), "the stream did not close after the terminal event"

    assert received[0].event == "snapshot" and received[0].id == "0-0"
    assert received[0].data["id"] == job_id and received[0].data["status"] == "queued"
    kinds = [e.event for e in received[1:]]
    assert kinds == ["queued", "started", *["progress"] * 5, "succeeded"]
    ids = [stream_id(e.id or "") for e in received[1:]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stored = [i for i, _ in worker_store.events(job_id)]
    assert [e.id for e in received[1:]] == stored
    assert received[-1].data["status"] == "succeeded" and received[-1].data["percent"] == 100.0
    progress = [float(e.data["percent"]) for e in received if e.event == "progress"]
    assert progress == [20.0, 40.0, 60.0, 80.0, 100.0]
    wait_until(lambda: _sse_clients(gateway) == 0, what="the SSE client count to drop")


def test_resume_after_any_event_delivers_every_later_event_exactly_once(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    _run_job(worker_store, job_id)
    full = _events(gateway, job_id)
    assert full[0].event == "snapshot" and full[-1].event == "succeeded"
    stored = full[1:]
    for k, cut in enumerate(stored[:-1]):
        resumed = _events(gateway, job_id, headers={"Last-Event-ID": cut.id or ""})
        assert [e.id for e in resumed] == [e.id for e in stored[k + 1 :]], f"resume after {cut.id}"
        assert all(e.event != "snapshot" for e in resumed)
    by_query = list(iter_sse(gateway.client, f"/v1/jobs/{job_id}/events?last_event_id={stored[2].id}"))
    assert [e.id for e in by_query] == [e.id for e in stored[3:]]
    # After the terminal event there is nothing more: 204 stops an EventSource from reconnecting.
    r = gateway.client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": stored[-1].id or ""})
    assert r.status_code == 204


def test_resume_while_running_continues_live(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore
) -> None:
    job_id = submit()
    claim = worker_store.claim(job_id, "w", lease_s=60)
    worker_store.progress(job_id, claim.attempt, Stage.decode, 50.0)
    last_seen = worker_store.events(job_id)[1][0]  # the `started` event
    received: list[SseEvent] = []
    reader = _reader(gateway, job_id, received, headers={"Last-Event-ID": last_seen})
    wait_until(lambda: len(received) >= 1, what="the stored progress event")
    worker_store.finish(
        job_id, JobStatus.failed, attempt=claim.attempt, error_code="audio_decode_failed", error_message="bad"
    )
    reader.join(15)
    assert [e.event for e in received] == ["progress", "failed"]
    assert received[-1].data["code"] == "audio_decode_failed" and received[-1].data["message"] == "bad"


def test_terminal_job_with_a_lost_stream_gets_one_synthesized_terminal_event(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = submit()
    claim = worker_store.claim(job_id, "w", lease_s=60)
    worker_store.finish(job_id, JobStatus.failed, attempt=claim.attempt, error_code="worker_lost", error_message="gone")
    redis_client.delete(f"wxs:job:{job_id}:events")
    events = _events(gateway, job_id)
    assert [e.event for e in events] == ["snapshot", "failed"]
    assert events[1].data == {"type": "failed", "status": "failed", "code": "worker_lost", "message": "gone"}
    # Resuming after the synthesized event ends the stream for good.
    r = gateway.client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": events[1].id or ""})
    assert r.status_code == 204


def test_synthesized_succeeded_event_has_numeric_percent(
    gateway: Gateway, submit: Callable[..., str], worker_store: JobStore, redis_client: redis.Redis
) -> None:
    job_id = submit()
    _run_job(worker_store, job_id)
    stored = _events(gateway, job_id)[-1]
    redis_client.delete(f"wxs:job:{job_id}:events")
    events = _events(gateway, job_id)
    assert [e.event for e in events] == ["snapshot", "succeeded"]
    synthesized = events[1].data
    assert synthesized == {"type": "succeeded", "status": "succeeded", "percent": 100.0}
    # Same JSON types as the stored terminal event the stream would have delivered.
    assert type(synthesized["percent"]) is type(stored.data["percent"]) is float


def test_stream_headers_and_keepalive_pings(gateway: Gateway, submit: Callable[..., str]) -> None:
    job_id = submit()
    with gateway.client.stream("GET", f"/v1/jobs/{job_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in r.headers
        pings = 0
        for line in r.iter_lines():
            if line.startswith(": ping"):
                pings += 1
                if pings == 2:
                    break
    assert pings == 2


def test_client_disconnect_ends_the_stream(gateway: Gateway, submit: Callable[..., str]) -> None:
    job_id = submit()
    with (
        httpx.Client(base_url=gateway.url, timeout=10) as other,
        other.stream("GET", f"/v1/jobs/{job_id}/events") as r,
    ):
        lines = r.iter_lines()  # keep the iterator: dropping it closes the connection
        while next(lines) != "event: queued":
            pass
        assert _sse_clients(gateway) == 1
    wait_until(lambda: _sse_clients(gateway) == 0, what="the server to notice the disconnect")


def test_events_of_unknown_job_is_404_json(gateway: Gateway) -> None:
    for job_id in ("0" * 32, "nope"):
        r = gateway.client.get(f"/v1/jobs/{job_id}/events")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "job_not_found"


def test_bad_last_event_ids_are_400_and_open_no_stream(gateway: Gateway, submit: Callable[..., str]) -> None:
    job_id = submit()
    future_ms = int(time.time() * 1000) + 3_600_000
    bad = [
        "yesterday",
        "1-2-3",  # a valid id with something after it: matched whole
        "x1-0",
        "1700000000000",  # no sequence part
        "-1-0",
        "1.5-0",
        "123456789012345678901-0",  # 21 digits
        f"{2**64}-0",  # over 2^64-1 (and in the future)
        f"1700000000000-{2**64}",  # sequence over 2^64-1
        f"{future_ms}-0",  # no event can have this id yet
    ]
    answers = [gateway.client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": v}) for v in bad]
    # A trailing newline cannot travel in a header; `$` alone would let it match.
    answers += [
        gateway.client.get(f"/v1/jobs/{job_id}/events", params={"last_event_id": v})
        for v in [*bad, "1700000000000-0\n"]
    ]
    for r in answers:
        assert r.status_code == 400, r.request.url
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "invalid_event_id", r.request.url
    assert _sse_clients(gateway) == 0
    # In range: the largest sequence number, the snapshot id and an id just now are accepted.
    for value in (f"1700000000000-{2**64 - 1}", "0-0", f"{int(time.time() * 1000)}-0"):
        with gateway.client.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": value}) as r:
            assert r.status_code == 200, value
