"""Fair sharing between API keys, end to end: a real gateway with auth on, one real Celery worker.

Key A submits a backlog of short clips, then key B submits one. With one worker slot, the
dispatcher has handed A at most one job before B's arrives, and then serves the key served least
recently first: B's job starts before A's remaining ones. The order is read from the `started`
events' stream ids (one Redis clock for every job), never from durations.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.speech import synth
from tests.sse import iter_sse, stream_id

#: Jobs of key A's backlog.
BACKLOG = 5
OPTIONS = {"language": "en", "align": "false", "diarize": "false"}


def create_key(svc: Service, name: str) -> str:
    """A new API key made with the real CLI (`whisperx-service keys create`) on the service's storage and Redis."""
    out = subprocess.run(
        [sys.executable, "-c", "from whisperx_service.cli import main; main()", "keys", "create", name],
        env=svc.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway with AUTH_ENABLED=true and one worker process (one slot)."""
    svc = start_service(tmp_path_factory.mktemp("fair"), redis_url, models_dir, AUTH_ENABLED="true")
    yield svc
    stop_service(svc)


def submit(svc: Service, key: str, clip: Path) -> str:
    with httpx.Client(base_url=svc.url, timeout=60) as c, clip.open("rb") as f:
        r = c.post(
            "/v1/jobs",
            files={"file": (clip.name, f, "audio/wav")},
            data=OPTIONS,
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def events(svc: Service, key: str, job_id: str) -> list[tuple[str, tuple[int, int]]]:
    """The job's events to its terminal one: (type, stream id)."""
    with httpx.Client(base_url=svc.url, timeout=httpx.Timeout(30.0, read=600.0)) as c:
        found = list(iter_sse(c, f"/v1/jobs/{job_id}/events", {"Authorization": f"Bearer {key}"}))
    return [(ev.event, stream_id(ev.id)) for ev in found if ev.id]


def test_a_second_key_is_not_starved_by_a_backlog(auth_service: Service, tmp_path: Path) -> None:
    svc = auth_service
    alice, bob = create_key(svc, "alice"), create_key(svc, "bob")
    clip = tmp_path / "clip.wav"
    synth("one two three four", "A", clip)

    a_jobs = [submit(svc, alice, clip) for _ in range(BACKLOG)]
    b_job = submit(svc, bob, clip)

    started: dict[str, tuple[int, int]] = {}
    for job_id, key in [*((j, alice) for j in a_jobs), (b_job, bob)]:
        evs = events(svc, key, job_id)
        starts = [sid for kind, sid in evs if kind == "started"]
        assert len(starts) == 1, (job_id, evs)  # each job ran once, never twice
        assert evs[-1][0] == "succeeded", (job_id, evs)
        started[job_id] = starts[0]

    order = sorted(started, key=started.__getitem__)
    # One worker: at most one of A's jobs was handed out before B's arrived; B's starts next.
    assert order.index(b_job) <= 1, order
    assert order[: order.index(b_job)] == a_jobs[: order.index(b_job)]
    # A's own jobs keep their submission order.
    assert [j for j in order if j != b_job] == a_jobs
