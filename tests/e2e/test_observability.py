"""Metrics, Sentry and log context of real jobs: a real gateway and Celery worker process on real speech.

The worker serves its Prometheus metrics on WORKER_METRICS_ADDRESS (prometheus-client's
multiprocess mode: the pool process records, the main process serves), the gateway its own on
METRICS_ADDRESS without a key; Sentry's DSN points at a local receiver (`tests/sentry_receiver.py`)
that records what the real sentry-sdk sends. Jobs, in order: a two-voice espeak-ng conversation
(succeeds), an undecodable WAV (fails `audio_decode_failed`), a file named `crash...` whose
diarize stage raises (the test-only plug-in `tests/e2e/crash_hook.py`; fails `job_crashed`).
Scrapes are taken before and after each, and every assertion reads what the service exported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.e2e.conftest import Service, _free_port, start_service, stop_service
from tests.e2e.crash_hook import SECRET_PATH
from tests.e2e.faults import job_hash, wait_until
from tests.hostile_media import unknown_codec_wav
from tests.sentry_receiver import SentryReceiver
from tests.speech import CONVERSATION, make_conversation
from whisperx_service.errors import AudioDecodeFailed, JobCrashed

TERMINAL = ("succeeded", "failed", "cancelled")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, parsed with prometheus-client's own parser."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sample's value, 0 when it is absent (a labelled series not created yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def stage_counts(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> dict[str, float]:
    """stage -> `wxs_stage_duration_seconds_count` of that stage."""
    return {dict(k[1])["stage"]: v for k, v in samples.items() if k[0] == "wxs_stage_duration_seconds_count"}


@dataclass
class Runs:
    """The service, its metric URLs, the Sentry receiver, and what each job left."""

    svc: Service
    worker_url: str
    gateway_url: str
    sentry: SentryReceiver
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> final status body
    scrapes: dict[str, dict[tuple[str, frozenset[tuple[str, str]]], float]] = field(default_factory=dict)
    running_seen: list[float] = field(default_factory=list)  # wxs_worker_jobs_running while "good" ran


def _run(runs: Runs, name: str, path: Path, **fields: Any) -> None:
    job = runs.svc.submit(path, **fields)
    if name == "good":
        with runs.svc.client() as c:
            while c.get(f"/v1/jobs/{job['id']}").json()["status"] not in TERMINAL:
                runs.running_seen.append(value(scrape(runs.worker_url), "wxs_worker_jobs_running"))
                time.sleep(0.2)
    runs.jobs[name] = runs.svc.wait(job["id"], 600)
    runs.scrapes[name] = scrape(runs.worker_url)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Runs]:
    tmp = tmp_path_factory.mktemp("observability")
    sentry = SentryReceiver().start()
    worker_port, gateway_port = _free_port(), _free_port()
    svc = start_service(
        tmp,
        redis_url,
        models_dir,
        worker_args=("--include", "tests.e2e.crash_hook"),
        WORKER_METRICS_ADDRESS=f"127.0.0.1:{worker_port}",
        METRICS_ADDRESS=f"127.0.0.1:{gateway_port}",
        SENTRY_DSN=sentry.dsn,
        SENTRY_ENVIRONMENT="e2e",
    )
    runs = Runs(svc, f"http://127.0.0.1:{worker_port}/metrics", f"http://127.0.0.1:{gateway_port}/metrics", sentry)
    try:
        runs.scrapes["start"] = scrape(runs.worker_url)
        speech, _ = make_conversation(tmp / "speech", CONVERSATION[:2])
        _run(runs, "good", speech, diarize=True, num_speakers=2, language="en")
        bad = tmp / "broken.wav"
        bad.write_bytes(unknown_codec_wav())
        _run(runs, "bad", bad)
        crash = tmp / "crash.wav"
        crash.write_bytes(speech.read_bytes())
        _run(runs, "crash", crash, diarize=True, language="en")
        yield runs
    finally:
        stop_service(svc)
        sentry.stop()


def _events(runs: Runs, name: str) -> list[Any]:
    return runs.svc.events(runs.jobs[name]["id"])


def test_stage_histograms_count_each_stage_the_job_ran(runs: Runs) -> None:
    assert runs.jobs["good"]["status"] == "succeeded", runs.jobs["good"]
    result = runs.svc.result(runs.jobs["good"]["id"]).json()
    assert result["chunks"] == 1  # so each stage ran once
    ran = {e.data["stage"] for e in _events(runs, "good") if e.event == "progress"}
    assert {"decode", "transcribe", "align", "diarize", "merge"} <= ran
    before, after = stage_counts(runs.scrapes["start"]), stage_counts(runs.scrapes["good"])
    delta = {stage: after.get(stage, 0) - before.get(stage, 0) for stage in after}
    assert {s for s, d in delta.items() if d} == ran, delta
    assert all(delta[s] == 1 for s in ran), delta
    for stage in ran:
        assert value(runs.scrapes["good"], "wxs_stage_duration_seconds_sum", stage=stage) > 0, stage


def test_the_job_counted_its_status_rtf_audio_and_model_loads(runs: Runs) -> None:
    start, good = runs.scrapes["start"], runs.scrapes["good"]
    ended = "wxs_worker_jobs_ended_total"
    ok = {"status": "succeeded", "code": "none"}
    assert value(good, ended, **ok) - value(start, ended, **ok) == 1
    assert value(good, "wxs_job_rtf_count") - value(start, "wxs_job_rtf_count") == 1
    assert value(good, "wxs_job_rtf_sum") > value(start, "wxs_job_rtf_sum")
    audio = value(good, "wxs_worker_audio_seconds_total") - value(start, "wxs_worker_audio_seconds_total")
    assert audio == pytest.approx(runs.jobs["good"]["duration_s"], abs=0.01)
    for kind in ("asr", "diarize"):
        assert value(good, "wxs_model_load_seconds_count", kind=kind) >= 1, kind
        assert value(good, "wxs_model_load_seconds_sum", kind=kind) > 0, kind


def test_running_gauge_follows_the_job(runs: Runs) -> None:
    assert 1 in runs.running_seen, runs.running_seen
    assert set(runs.running_seen) <= {0, 1}
    assert value(runs.scrapes["crash"], "wxs_worker_jobs_running") == 0


def test_failed_jobs_are_counted_under_their_error_code(runs: Runs) -> None:
    ended = "wxs_worker_jobs_ended_total"
    assert runs.jobs["bad"]["error"] == {"code": "audio_decode_failed", "message": AudioDecodeFailed.public_message}
    good, bad, crash = runs.scrapes["good"], runs.scrapes["bad"], runs.scrapes["crash"]
    decode_failed = {"status": "failed", "code": "audio_decode_failed"}
    assert value(bad, ended, **decode_failed) - value(good, ended, **decode_failed) == 1
    crashed = {"status": "failed", "code": "job_crashed"}
    assert value(crash, ended, **crashed) - value(bad, ended, **crashed) == 1
    assert value(crash, ended, status="succeeded", code="none") == value(good, ended, status="succeeded", code="none")
    assert value(crash, "wxs_job_rtf_count") == value(good, "wxs_job_rtf_count"), "no RTF for a failed job"


def test_gateway_metrics_on_metrics_address_without_a_key(runs: Runs) -> None:
    gw = scrape(runs.gateway_url)
    assert value(gw, "wxs_jobs_submitted_total") == 3
    assert value(gw, "wxs_jobs_finished_total", outcome="succeeded") == 1
    assert value(gw, "wxs_jobs_finished_total", outcome="failed") == 2
    assert value(gw, "wxs_job_duration_seconds_count") == 3
    assert value(gw, "wxs_upload_bytes_total") > 0
    assert value(gw, "wxs_queue_depth", where="held") == 0
    assert value(gw, "wxs_queue_depth", where="broker") == 0
    assert value(gw, "wxs_jobs_running") == 0
    assert value(gw, "wxs_sse_clients") == 0


def test_an_exception_in_a_stage_reaches_sentry_with_job_tags(runs: Runs) -> None:
    status = runs.jobs["crash"]
    job_id = status["id"]
    assert status["status"] == "failed"
    assert status["error"] == {"code": "job_crashed", "message": JobCrashed.public_message}
    seen_by_client = json.dumps(status) + json.dumps([e.data for e in _events(runs, "crash")])
    assert SECRET_PATH not in seen_by_client and "crash hook" not in seen_by_client

    event = runs.sentry.wait_event(lambda e: e.get("tags", {}).get("job_id") == job_id)
    assert event["tags"]["stage"] == "diarize"
    assert event["tags"]["attempt"] == "1"
    assert event["environment"] == "e2e"
    (exc,) = event["exception"]["values"]
    assert exc["type"] == "RuntimeError" and SECRET_PATH in exc["value"], exc
    frames = [f.get("function") for f in exc["stacktrace"]["frames"]]
    assert "process_chunk" in frames, frames
    others = [e for e in runs.sentry.events() if e.get("tags", {}).get("job_id") == job_id]
    assert len(others) == 1, "one event per crash: the logged exception is deduplicated"
    for name in ("good", "bad"):  # expected outcomes are not errors
        assert not [e for e in runs.sentry.events() if e.get("tags", {}).get("job_id") == runs.jobs[name]["id"]]


def _log_lines(svc: Service) -> list[dict[str, Any]]:
    out = []
    for line in (svc.logs / "worker0.log").read_text(errors="replace").splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            out.append(parsed)
    return out


def test_every_log_line_of_a_job_carries_its_context(runs: Runs) -> None:
    job_id = runs.jobs["good"]["id"]
    lines = _log_lines(runs.svc)
    start = next(i for i, x in enumerate(lines) if x.get("event") == "job_started" and x.get("job_id") == job_id)
    end = next(i for i, x in enumerate(lines) if x.get("event") == "job_succeeded" and x.get("job_id") == job_id)
    pid = lines[start]["pid"]
    during = [x for x in lines[start : end + 1] if x.get("pid") == pid]  # the pool process that ran it
    # The worker is warm (models loaded at start): the job's own lines are its start, its chunk and its end.
    assert {"job_started", "chunk_done", "job_succeeded"} <= {x["event"] for x in during}, during
    assert all(x.get("job_id") == job_id and x.get("attempt") == 1 for x in during), [
        x for x in during if x.get("job_id") != job_id or x.get("attempt") != 1
    ]
    first_stage = next(i for i, x in enumerate(during) if "stage" in x)
    staged = during[first_stage:]
    assert all(x.get("stage") in {"decode", "transcribe", "align", "diarize", "merge", "vad"} for x in staged)
    assert during[-1]["event"] == "job_succeeded" and during[-1]["stage"] == "merge"
    assert {x["stage"] for x in staged if x["event"] == "chunk_done"} == {"diarize"}
    crashed = [x for x in lines if x.get("event") == "job_crashed"]
    assert [(x["job_id"], x["stage"], x["attempt"]) for x in crashed] == [(runs.jobs["crash"]["id"], "diarize", 1)]


def test_a_killed_pool_process_stops_counting_as_running(runs: Runs, tmp_path: Path) -> None:
    # Last in this module: it kills the pool process mid-job (SIGKILL: no exit hook runs), so only
    # the exporter's scrape-time sweep (mark_process_dead of a gone pid) can drop its live gauge.
    speech, _ = make_conversation(tmp_path / "speech", CONVERSATION[:2])
    job = runs.svc.submit(speech, diarize=True, language="en")
    wait_until(lambda: value(scrape(runs.worker_url), "wxs_worker_jobs_running") == 1, 120, "the job counted running")
    with runs.svc.client() as c:
        owner = c.get(f"/v1/jobs/{job['id']}").json()
    assert owner["status"] == "running"
    pid = int(job_hash(runs.svc, job["id"])["lease_owner"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: value(scrape(runs.worker_url), "wxs_worker_jobs_running") == 0, 60, "the dead process dropped")


def _bare_worker(tmp: Path, redis_url: str, **env: str) -> subprocess.Popen[str]:
    """A Celery worker process alone (no gateway), on a queue nobody sends to, its output piped."""
    tag = f"obs-{os.getpid()}-{_free_port()}"
    full = {
        **os.environ,
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/14",
        "REDIS_KEY_PREFIX": tag,
        "WORKER_QUEUE": tag,
        "STORAGE_ROOT": str(tmp / "storage"),
        "LOG_JSON": "true",
        **env,
    }
    cmd = [sys.executable, "-m", "celery", "-A", "whisperx_service.worker.main", "worker", "-P", "prefork", "-c", "1",
           "-Q", tag, "-n", f"{tag}@%h", "--without-gossip", "--without-mingle"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_worker_refuses_to_start_when_its_metrics_address_is_taken(tmp_path: Path, redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _bare_worker(tmp_path, redis_url, WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}")
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "cannot serve WORKER_METRICS_ADDRESS" in out and "Address already in use" in out, out[-2000:]


def test_worker_wipes_an_operators_multiprocess_dir_at_start(tmp_path: Path, redis_url: str) -> None:
    # A file left by an earlier run (written by prometheus-client itself, in multiprocess mode).
    stale = tmp_path / "multiproc"
    stale.mkdir()
    code = (
        "from whisperx_service.worker.metrics import worker_metrics\n"
        "worker_metrics().jobs_ended.labels(status='succeeded', code='none').inc(41)\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(stale)}, check=True)
    (left,) = stale.glob("counter_*.db")
    port = _free_port()
    env = {"WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(stale)}
    proc = _bare_worker(tmp_path, redis_url, **env)
    try:
        url = f"http://127.0.0.1:{port}/metrics"

        def served() -> bool:
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(served, 120, "the worker's metrics listener")
        samples = scrape(url)
        assert value(samples, "wxs_worker_jobs_ended_total", status="succeeded", code="none") == 0
        assert not left.exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
