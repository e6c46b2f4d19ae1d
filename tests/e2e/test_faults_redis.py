"""Redis faults with real processes: a private redis-server killed, restarted, wiped; jobs survive.

Each test runs its own redis-server (`PrivateRedis`: free port, temp dir, AOF `everysec`,
noeviction, like `scripts/ensure_redis.sh`) and its own gateway + Celery worker pointed at it, so
killing or wiping it never touches the shared Redis. Leases are short (6 s) and the reconciler
sweeps every second. Audio is short espeak-ng speech (tests/speech.py), transcribed without
diarization; one longer file keeps a job running while Redis goes down.

Each test prints what it saw (times, attempts, status codes); run with `-s` to read it.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PrivateRedis, Service, start_service, stop_service
from tests.speech import long_script, make_conversation
from whisperx_service.store.keys import Keys

ENV = {"WORKER_LEASE_S": "6", "API_RECONCILE_INTERVAL_S": "1"}
FIELDS: dict[str, Any] = {"diarize": False, "language": "en"}
TERMINAL = ("succeeded", "failed", "cancelled")
#: How long Redis stays down in the kill test (s): longer than the lease, so it has expired on return.
DOWN_S = 10.0


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 4 s of one espeak-ng voice."""
    d = tmp_path_factory.mktemp("short")
    return make_conversation(d, [("A", "The budget meeting starts on Monday at ten, in the small room.")])[0]


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 45 s of two espeak-ng voices: a job that is still running when Redis goes down."""
    return make_conversation(tmp_path_factory.mktemp("long"), long_script(8, seed=11))[0]


@pytest.fixture
def svc(tmp_path: Path, private_redis: PrivateRedis, models_dir: Path) -> Iterator[Service]:
    """Gateway + worker on the test's private Redis."""
    s = start_service(tmp_path / "svc", private_redis.url, models_dir, **ENV)
    yield s
    stop_service(s)


class Poller(threading.Thread):
    """Polls GET /v1/jobs/{id} of every job in `ids`, every 0.2 s, and keeps what it saw.

    `seen[id]` is the list of (seconds since start, HTTP status code, job status or error code),
    one entry per change.
    """

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="status-poller")
        self.url = url
        self.ids: list[str] = []
        self.seen: dict[str, list[tuple[float, int, str]]] = {}
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as c:
            while not self.stop.is_set():
                for job_id in list(self.ids):
                    try:
                        r = c.get(f"/v1/jobs/{job_id}")
                        body = r.json()
                        what = body["status"] if r.status_code == 200 else body["error"]["code"]
                        code = r.status_code
                    except httpx.HTTPError as e:
                        code, what = 0, type(e).__name__
                    seq = self.seen.setdefault(job_id, [])
                    if not seq or seq[-1][1:] != (code, what):
                        seq.append((round(time.monotonic() - self.t0, 1), code, what))
                time.sleep(0.2)

    def last(self, job_id: str) -> str:
        """The last status seen for the job ('' if none)."""
        seq = self.seen.get(job_id) or [(0.0, 0, "")]
        return seq[-1][2]

    def backwards(self) -> dict[str, list[tuple[float, int, str]]]:
        """Jobs whose status was seen going back (e.g. running -> queued), with what was seen."""
        rank = {"queued": 0, "running": 1, **dict.fromkeys(TERMINAL, 2)}
        out = {}
        for job_id, seq in self.seen.items():
            ranks = [rank[what] for _, code, what in seq if code == 200]
            if any(b < a for a, b in itertools.pairwise(ranks)):
                out[job_id[:8]] = seq
        return out

    def errors_after_recovery(self, t: float) -> dict[str, list[tuple[float, int, str]]]:
        """Jobs that got an error answer (5xx, or none) after their first 200 answer since `t`
        (time.monotonic(), e.g. Redis's restart): once Redis answered again, no request may fail."""
        since = t - self.t0
        out = {}
        for job_id, seq in self.seen.items():
            later = [code for at, code, _ in seq if at >= since]
            answered = later.index(200) if 200 in later else len(later)
            if any(code == 0 or code >= 500 for code in later[answered:]):
                out[job_id[:8]] = seq
        return out

    def wait_all(self, timeout_s: float) -> float:
        """Wait until every job was seen terminal; returns the seconds waited."""
        t = time.monotonic()
        deadline = t + timeout_s
        while not all(self.last(j) in TERMINAL for j in self.ids):
            left = {j[:8]: self.last(j) for j in self.ids if self.last(j) not in TERMINAL}
            assert time.monotonic() < deadline, f"jobs not terminal after {timeout_s} s: {left}"
            time.sleep(0.3)
        return time.monotonic() - t


def _events(redis_server: PrivateRedis, svc: Service, job_id: str) -> list[dict[str, str]]:
    keys = Keys(svc.env["REDIS_KEY_PREFIX"])
    with redis_server.client() as r:
        raw = r.xrange(keys.events(job_id))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]


def _job_hash(redis_server: PrivateRedis, svc: Service, job_id: str) -> dict[str, str]:
    with redis_server.client() as r:
        h = r.hgetall(Keys(svc.env["REDIS_KEY_PREFIX"]).job(job_id))
    return {k.decode(): v.decode() for k, v in h.items()}


def _log_count(svc: Service, event: str, job_id: str) -> int:
    """How many worker log lines report `event` for the job (JSON lines, or console lines of a pool
    process forked before the worker configured its logging)."""
    return sum(
        1
        for path in sorted(svc.logs.glob("worker*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if job_id in line and (f'"event": "{event}"' in line or f"] {event} " in line)
    )


def _log_lines(svc: Service, *needles: str) -> list[str]:
    """Plain log lines (Celery's own) of the worker logs that contain any of `needles`."""
    return [
        line.strip()
        for path in sorted(svc.logs.glob("worker*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if any(n in line for n in needles)
    ]


def _check_exactly_once(redis_server: PrivateRedis, svc: Service, ids: list[str]) -> None:
    """Every job: succeeded, one terminal event, one result.json, final.json agrees, one `job_succeeded`."""
    for job_id in ids:
        h = _job_hash(redis_server, svc, job_id)
        assert h.get("status") == "succeeded", (job_id, h)
        terminal = [e for e in _events(redis_server, svc, job_id) if e.get("type") in TERMINAL]
        assert len(terminal) == 1, (job_id, terminal)
        job_dir = svc.storage / "jobs" / job_id
        result = json.loads((job_dir / "result.json").read_text())
        assert result["segments"], job_id
        final = json.loads((job_dir / "final.json").read_text())
        assert final["status"] == "succeeded", (job_id, final)
        assert _log_count(svc, "job_succeeded", job_id) == 1, f"job {job_id} not done exactly once: {svc.logs}"
        assert not list(job_dir.glob(".tmp-*")), job_id


def _wait_transcribing(redis_server: PrivateRedis, svc: Service, job_id: str, timeout_s: float) -> dict[str, str]:
    """Wait until the job's worker is transcribing (models loaded, work under way); returns its hash."""
    deadline = time.monotonic() + timeout_s
    while True:
        h = _job_hash(redis_server, svc, job_id)
        assert h.get("status") not in TERMINAL, f"job {job_id} ended before Redis went down: {h}"
        if h.get("status") == "running" and h.get("stage") == "transcribe":
            return h
        assert time.monotonic() < deadline, f"job {job_id} not transcribing after {timeout_s} s: {h}"
        time.sleep(0.1)


def test_redis_killed_and_restarted_with_aof_loses_no_job(
    svc: Service, private_redis: PrivateRedis, short_wav: Path, long_wav: Path
) -> None:
    t_start = time.monotonic()
    poller = Poller(svc.url)
    poller.start()
    first = svc.submit(long_wav, **FIELDS)["id"]
    queued = [svc.submit(short_wav, **FIELDS)["id"] for _ in range(10)]
    ids = [first, *queued]
    poller.ids.extend(ids)
    before = _wait_transcribing(private_redis, svc, first, 400)
    assert all(_job_hash(private_redis, svc, j)["status"] == "queued" for j in queued)

    private_redis.kill()
    t_kill = time.monotonic()
    codes: dict[int, int] = {}
    with svc.client(timeout=15) as c:
        while time.monotonic() - t_kill < DOWN_S:
            code = c.get(f"/v1/jobs/{first}").status_code
            codes[code] = codes.get(code, 0) + 1
            time.sleep(0.5)
    private_redis.start()
    t_up = time.monotonic()
    waited = poller.wait_all(600)
    poller.stop.set()
    poller.join(10)

    _check_exactly_once(private_redis, svc, ids)
    assert not poller.backwards(), poller.backwards()
    assert not poller.errors_after_recovery(t_up), poller.errors_after_recovery(t_up)
    h = _job_hash(private_redis, svc, first)
    attempts = {j[:8]: _job_hash(private_redis, svc, j)["attempt"] for j in ids}
    assert all(a == "1" for j, a in attempts.items() if j != first[:8]), attempts
    assert codes.keys() <= {503}, codes  # down: the status API says so, it never invents an answer
    print(
        f"\n[redis kill -9] running job {first[:8]} at {before.get('stage')} {before.get('percent')}% "
        f"(attempt {before.get('attempt')}) + 10 queued; Redis down {t_up - t_kill:.1f} s "
        f"(GET status during the outage: {codes}); all 11 terminal {waited:.1f} s after the restart; "
        f"running job ended at attempt {h['attempt']}; attempts {attempts}; test {time.monotonic() - t_start:.0f} s"
    )
    print("  running job statuses:", poller.seen[first])
    _print_worker_story(svc)


def _print_worker_story(svc: Service) -> None:
    """The worker's log lines about the outage (for the report)."""
    needles = ("Connection to broker lost", "Terminating", "Connected to redis", "WorkerLost", "exited with",
               "job_lost", "job_crashed", "job_release", "job_released", "lease_renew_failed", "job_started",
               "job_succeeded", "job_failed")  # fmt: skip
    for line in _log_lines(svc, *needles):
        print("  worker:", line[:260])


def test_redis_restarted_empty_jobs_are_restored_from_storage(
    svc: Service, private_redis: PrivateRedis, short_wav: Path, long_wav: Path
) -> None:
    t_start = time.monotonic()
    poller = Poller(svc.url)
    poller.start()
    first = svc.submit(long_wav, **FIELDS)["id"]
    queued = [svc.submit(short_wav, **FIELDS)["id"] for _ in range(4)]
    ids = [first, *queued]
    poller.ids.extend(ids)
    before = _wait_transcribing(private_redis, svc, first, 400)
    assert all(_job_hash(private_redis, svc, j)["status"] == "queued" for j in queued)

    private_redis.kill()
    private_redis.wipe()
    private_redis.start()
    t_up = time.monotonic()
    waited = poller.wait_all(600)
    poller.stop.set()
    poller.join(10)

    not_found = {j[:8]: seq for j, seq in poller.seen.items() if any(code == 404 for _, code, _ in seq)}
    assert not not_found, f"a known job was reported unknown: {not_found}"
    _check_exactly_once(private_redis, svc, ids)
    assert not poller.backwards(), poller.backwards()
    assert not poller.errors_after_recovery(t_up), poller.errors_after_recovery(t_up)
    attempts = {j[:8]: _job_hash(private_redis, svc, j)["attempt"] for j in ids}
    print(
        f"\n[redis wiped] 1 running (at {before.get('stage')} {before.get('percent')}%) + 4 queued; "
        f"all 5 terminal {waited:.1f} s after the empty restart; "
        f"attempts {attempts}; test {time.monotonic() - t_start:.0f} s (restart at +{t_up - poller.t0:.1f} s)"
    )
    for j in ids:
        print(f"  {j[:8]} statuses:", poller.seen[j])
    _print_worker_story(svc)


def _multipart(path: Path, fields: dict[str, Any]) -> tuple[bytes, bytes, str]:
    """(head, tail, content type) of a multipart body whose file part is `path`'s bytes, sent between them."""
    boundary = "faultb0undary"
    head = b""
    for k, v in fields.items():
        value = str(v).lower() if isinstance(v, bool) else str(v)
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{value}\r\n'.encode()
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _job_dirs(svc: Service) -> list[str]:
    jobs = svc.storage / "jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.exists() else []


def test_redis_down_on_submit_answers_503_and_keeps_nothing(
    svc: Service, private_redis: PrivateRedis, short_wav: Path
) -> None:
    t_start = time.monotonic()
    warm = svc.submit(short_wav, **FIELDS)["id"]  # connections of the gateway's pools are open and used
    assert svc.wait(warm, 300)["status"] == "succeeded"
    known = _job_dirs(svc)

    # 1. Redis is down when the request arrives.
    private_redis.kill()
    with svc.client() as c, short_wav.open("rb") as f:
        t = time.monotonic()
        r = c.post("/v1/jobs", files={"file": (short_wav.name, f, "audio/wav")}, data={"language": "en"})
        t_503 = time.monotonic() - t
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "service_unavailable" and "Redis" in err["message"], err
    assert _job_dirs(svc) == known

    # 2. Redis dies in the middle of an upload (after the gateway's ping, before the job is recorded).
    private_redis.start()
    head, tail, ctype = _multipart(short_wav, FIELDS)
    data = short_wav.read_bytes()
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield head + data[: len(data) // 2]
        assert release.wait(60), "never released"
        yield data[len(data) // 2 :] + tail

    answer: list[httpx.Response] = []

    def post() -> None:
        with svc.client(timeout=60) as c:
            answer.append(c.post("/v1/jobs", content=body(), headers={"Content-Type": ctype}))

    sender = threading.Thread(target=post, daemon=True)
    sender.start()
    deadline = time.monotonic() + 30
    while len(_job_dirs(svc)) == len(known):  # the upload has started: the ping is behind it
        assert time.monotonic() < deadline, "the slow upload never started"
        time.sleep(0.02)
    private_redis.kill()
    release.set()
    sender.join(60)
    assert answer, "no answer to the interrupted upload"
    assert answer[0].status_code == 503, answer[0].text
    assert answer[0].json()["error"]["code"] == "service_unavailable"
    assert _job_dirs(svc) == known, "the upload of a refused job stayed on disk"

    # 3. Back up: the same request is accepted and the job completes.
    private_redis.start()
    t_up = time.monotonic()
    job = svc.submit(short_wav, **FIELDS)["id"]
    t_202 = time.monotonic() - t_up
    assert svc.wait(job, 300)["status"] == "succeeded"
    assert _job_dirs(svc) == sorted([*known, job])
    assert svc.result(job).json()["segments"]
    print(
        f"\n[redis down on submit] 503 in {t_503:.2f} s ({err['message']!r}); mid-upload death: "
        f"{answer[0].status_code} {answer[0].json()['error']['code']}, no files left; back up: 202 in "
        f"{t_202:.2f} s, job succeeded; test {time.monotonic() - t_start:.0f} s"
    )
