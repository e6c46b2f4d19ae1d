"""Signed webhooks end to end: a real gateway and outbound worker, receivers on 127.0.0.1.

No GPU worker runs here: jobs stay held, and cancelling one ends it (`cancelled`), which is the
event delivered. Retries are made fast by settings (WEBHOOK_BACKOFF_BASE_S), and the tests assert
on what receivers got and on `GET /v1/jobs/{id}/webhooks`, never on durations beyond "gaps grow".
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import wait_until
from tests.e2e.receivers import HANG, Receiver, start_receiver, write_tone
from whisperx_service.domain.webhooks import new_webhook_secret

SECRET = new_webhook_secret()
#: Seconds of one attempt (each phase) in these tests: a hanging receiver is cut after this.
TIMEOUT_S = 1.5


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway + one outbound worker, no GPU worker; private targets allowed (receivers are on loopback)."""
    s = start_service(
        tmp_path_factory.mktemp("hooks"),
        redis_url,
        models_dir,
        workers=0,
        outbound=True,
        API_DISPATCH_INTERVAL_S="0",  # jobs stay held: each test ends its job by cancelling it
        OUTBOUND_ALLOW_PRIVATE="true",
        OUTBOUND_POLL_S="0.1",
        OUTBOUND_LEASE_S="4",
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_TIMEOUT_S=str(TIMEOUT_S),
        # Waits of 1-1.25, 2-2.5, 4-5 s: each gap clears the one before it by 0.75 s or more, room for
        # a busy machine's delays in scheduling a retry.
        WEBHOOK_BACKOFF_BASE_S="1.0",
        WEBHOOK_JITTER="0.25",
    )
    yield s
    stop_service(s)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tone (the jobs never run: any audio does)."""
    return write_tone(tmp_path_factory.mktemp("audio") / "tone.wav")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    r.close()


def end_job(svc: Service, audio: Path, url: str, **fields: Any) -> str:
    """Submit a job with `webhook_url=url` and cancel it (it ends `cancelled`); returns its id."""
    job_id = str(svc.submit(audio, webhook_url=url, **fields)["id"])
    with svc.client() as c:
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 200
    return job_id


def deliveries(svc: Service, job_id: str) -> list[dict[str, Any]]:
    """GET /v1/jobs/{id}/webhooks -> its deliveries."""
    with svc.client() as c:
        r = c.get(f"/v1/jobs/{job_id}/webhooks")
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


def settled(svc: Service, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The job's one delivery once it is no longer pending."""
    return wait_until(
        lambda: next((d for d in deliveries(svc, job_id) if d["state"] != "pending"), None),
        timeout_s,
        "delivery settled",
    )


def test_cancelled_job_sends_one_signed_event(svc: Service, audio: Path, receiver: Receiver) -> None:
    job_id = end_job(svc, audio, receiver.url())
    (got,) = receiver.wait_for(1, 30)
    body = standardwebhooks.Webhook(SECRET).verify(got.body, got.headers)
    assert body == {
        "type": "job.ended",
        "job_id": job_id,
        "status": "cancelled",
        "result_url": f"/v1/jobs/{job_id}/result",
        "created_at": body["created_at"],
    }
    assert got.headers["webhook-id"] == f"msg_{job_id}_ended"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new_webhook_secret()).verify(got.body, got.headers)
    (d,) = [settled(svc, job_id)]
    assert d["id"] == got.headers["webhook-id"] and d["type"] == "job.ended" and d["state"] == "delivered"
    assert [(a["attempt"], a["status_code"], a["error"]) for a in d["attempts"]] == [(1, 200, None)]
    assert d["attempts"][0]["latency_ms"] > 0


def test_three_failures_then_success_four_attempts_growing_gaps(svc: Service, audio: Path, receiver: Receiver) -> None:
    receiver.script = [500, 503, 500]
    job_id = end_job(svc, audio, receiver.url())
    got = receiver.wait_for(4, 60)
    d = settled(svc, job_id)
    assert d["state"] == "delivered"
    assert [a["status_code"] for a in d["attempts"]] == [500, 503, 500, 200]
    assert [a["error"] for a in d["attempts"]] == ["http_status"] * 3 + [None]
    assert len(receiver.requests) == 4
    assert {r.headers["webhook-id"] for r in got} == {f"msg_{job_id}_ended"}  # one id on every retry
    assert len({r.body for r in got}) == 1  # the same bytes every time
    for r in got:
        standardwebhooks.Webhook(SECRET).verify(r.body, r.headers)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] < gaps[1] < gaps[2], gaps


def test_410_stops_the_retries(svc: Service, audio: Path, receiver: Receiver) -> None:
    receiver.script = [410]
    receiver.default = 500
    job_id = end_job(svc, audio, receiver.url())
    d = settled(svc, job_id)
    assert d["state"] == "gone"
    assert [a["status_code"] for a in d["attempts"]] == [410]
    # Past the first retry's latest due time (base 1 s x 1.25) plus a schedule poll: none came.
    other = end_job(svc, audio, receiver.url())  # a later delivery to the same receiver, as a clock
    wait_until(lambda: any(json.loads(r.body)["job_id"] == other for r in receiver.requests), 30, "second job")
    assert sum(json.loads(r.body)["job_id"] == job_id for r in receiver.requests) == 1


def test_hanging_receiver_is_cut_at_the_timeout_and_retried(svc: Service, audio: Path, receiver: Receiver) -> None:
    receiver.script = [HANG]
    job_id = end_job(svc, audio, receiver.url())
    d = settled(svc, job_id, timeout_s=60)
    assert d["state"] == "delivered"
    assert [(a["status_code"], a["error"]) for a in d["attempts"]] == [(None, "timeout"), (200, None)]
    assert d["attempts"][0]["latency_ms"] >= TIMEOUT_S * 1000 * 0.9


def test_a_webhook_url_that_is_not_http_is_refused(svc: Service, audio: Path) -> None:
    with svc.client() as c, audio.open("rb") as f:
        r = c.post("/v1/jobs", files={"file": ("a.wav", f, "audio/wav")}, data={"webhook_url": "ftp://x/y"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert "webhook_url" in r.json()["error"]["message"]


def test_kill_9_of_the_delivering_worker_mid_retry_loses_nothing(svc: Service, audio: Path, receiver: Receiver) -> None:
    receiver.script = [500, 500]
    outbound = [p for p in svc.procs if p.args == svc.outbound_cmd and p.poll() is None]
    assert len(outbound) == 1
    job_id = end_job(svc, audio, receiver.url())
    receiver.wait_for(1, 30)
    svc.kill_worker(outbound[0])  # SIGKILL of its whole group: between attempts, or in the middle of one
    attempts_then = len(receiver.requests)
    svc.start_outbound()
    d = settled(svc, job_id, timeout_s=60)
    assert d["state"] == "delivered"
    assert [a["status_code"] for a in d["attempts"]][-1] == 200
    assert len(receiver.requests) >= max(attempts_then, 3)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {f"msg_{job_id}_ended"}
