"""The host side of `make test-docker` (scripts/test_docker.sh): checks the running containers.

The script starts the gateway and a CPU worker container (host networking, a Redis of its own)
and runs `python -m tests.docker_smoke ...`. This module then, against those real containers:
waits for the gateway's admin key and `/readyz`; submits a synthetic two-voice espeak-ng
conversation (tests/speech.py, its first four turns) with that key, reads its event stream live, and downloads the
transcript (JSON and SRT); checks the text's WER against the script (the e2e tests' bound);
checks that the gateway serves the web page and, when scripts/install.sh put tus-js-client's
bundle in the build context, that same file (else the page's fallback: a 404 for it); checks
that each container's main process and a command run in it are not root, and that both
Docker health checks report `healthy`. Then it records the images' sizes, the build times and the
job's numbers in a JSON file (`bench/results-docker.json`), under `cold` or `warm`.

Exits 1 with the reason (an AssertionError) when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.metrics import wer
from tests.speech import CONVERSATION, make_conversation
from tests.sse import SseEvent, iter_sse

#: The e2e tests' WER bound for this conversation (tests/e2e/test_jobs_e2e.py).
MAX_WER = 0.10
#: Its first four turns (two voices, about 23 s, 60 words): the CPU worker's job time dominates
#: the run, and the full conversation is the e2e tests' job.
TURNS = CONVERSATION[:4]
STAGES = ["decode", "transcribe", "align", "diarize", "merge"]


def docker(binary: str, *args: str) -> str:
    """Output of a `docker` client command (stripped); raises CalledProcessError when it fails."""
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout.strip()


def wait_for(what: str, timeout_s: float, check: Any, interval_s: float = 1.0) -> Any:
    """Call `check()` until it returns something truthy; AssertionError after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def health(binary: str, container: str) -> str:
    """The container's Docker health status (`starting`, `healthy`, `unhealthy`); fails if it exited."""
    state = json.loads(docker(binary, "inspect", "-f", "{{json .State}}", container))
    assert state["Running"], f"{container} exited with status {state['ExitCode']}"
    return str(state.get("Health", {}).get("Status", "none"))


def wait_healthy(binary: str, container: str, timeout_s: float) -> float:
    """Seconds until the container's health check reports `healthy`; fails on `unhealthy`."""
    t0 = time.monotonic()

    def healthy() -> bool:
        status = health(binary, container)
        assert status != "unhealthy", f"{container} is unhealthy"
        return status == "healthy"

    wait_for(f"{container} healthy", timeout_s, healthy, interval_s=2.0)
    return round(time.monotonic() - t0, 1)


def check_not_root(binary: str, container: str) -> int:
    """The uid of the container's main process (from /proc on the host) and of `docker exec id -u`.

    Both must be the same non-zero uid; returns it.
    """
    pid = docker(binary, "inspect", "-f", "{{.State.Pid}}", container)
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    exec_uid = int(docker(binary, "exec", container, "id", "-u"))
    assert uid != 0 and exec_uid == uid, f"{container}: main process uid {uid}, exec uid {exec_uid}"
    return uid


def run_job(url: str, key: str, work: Path) -> dict[str, Any]:
    """Submit the conversation, follow its events, download the transcript; returns the job's numbers."""
    wav, turns = make_conversation(work, TURNS)
    reference = " ".join(t.text for t in turns)
    auth = {"Authorization": f"Bearer {key}"}
    events: list[SseEvent] = []
    with httpx.Client(base_url=url, headers=auth, timeout=httpx.Timeout(30.0, read=900.0)) as client:
        assert client.get("/v1/jobs").status_code == 200
        assert httpx.get(f"{url}/v1/jobs", timeout=10).status_code == 401, "a request without a key is refused"
        t0 = time.monotonic()
        with wav.open("rb") as f:
            r = client.post(
                "/v1/jobs",
                files={"file": (wav.name, f, "audio/wav")},
                data={"diarize": "true", "num_speakers": "2", "language": "en"},
            )
        assert r.status_code == 202, r.text
        job = r.json()["id"]
        reader = threading.Thread(target=lambda: events.extend(iter_sse(client, f"/v1/jobs/{job}/events")))
        reader.start()
        reader.join(900)
        assert not reader.is_alive(), "the event stream did not end"
        job_s = round(time.monotonic() - t0, 1)
        status = client.get(f"/v1/jobs/{job}").json()
        assert status["status"] == "succeeded", status
        kinds = [e.event for e in events]
        assert kinds[0] == "snapshot" and kinds[-1] == "succeeded", kinds
        seen = {e.data["stage"] for e in events if e.event == "progress"}
        assert set(STAGES) <= seen, f"stages seen: {seen}"
        result = client.get(f"/v1/jobs/{job}/result", params={"format": "json"}).json()
        srt = client.get(f"/v1/jobs/{job}/result", params={"format": "srt"})
        assert srt.status_code == 200 and "-->" in srt.text, srt.text[:200]
    text = " ".join(s["text"] for s in result["segments"])
    error = wer(reference, text)
    assert error <= MAX_WER, f"WER {error:.3f} > {MAX_WER}: {text!r}"
    assert len(result["speakers"]) == 2, result["speakers"]
    return {
        "audio_s": round(float(result["duration"]), 2),
        "wer": round(error, 4),
        "speakers": len(result["speakers"]),
        "job_s": job_s,
        "models": result.get("models"),
    }


#: tus-js-client's bundle as scripts/install.sh leaves it in the build context (git-ignored).
TUS_BUNDLE = Path(__file__).resolve().parents[1] / "src/whisperx_service/web/static/vendor/tus.min.js"


def check_page(url: str) -> bool:
    """The gateway image serves the page, and tus-js-client's bundle exactly when the build context
    had it (the image copies it from there: no npm in the image build). Returns whether it does."""
    assert httpx.get(f"{url}/", timeout=10).status_code == 200, "the web page"
    r = httpx.get(f"{url}/static/vendor/tus.min.js", timeout=10)
    if TUS_BUNDLE.is_file():
        assert r.status_code == 200 and r.content == TUS_BUNDLE.read_bytes(), "the image lacks tus-js-client"
        return True
    assert r.status_code == 404, r.status_code
    return False


def _pairs(text: str) -> dict[str, str]:
    """`"a=1 b=2"` -> {"a": "1", "b": "2"}."""
    return dict(item.split("=", 1) for item in text.split())


def main() -> None:
    """Parse the script's arguments, run every check, write the results file."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--docker", required=True, help="the docker client binary")
    p.add_argument("--api", required=True, help="the gateway container's name")
    p.add_argument("--worker", required=True, help="the worker container's name")
    p.add_argument("--url", required=True, help="the gateway's base URL")
    p.add_argument("--admin-key-file", type=Path, required=True, help="STORAGE_ROOT/admin.key on the host")
    p.add_argument("--work", type=Path, required=True, help="a folder for the synthetic speech")
    p.add_argument("--sizes", required=True, help="'api=BYTES worker=BYTES'")
    p.add_argument("--build-s", required=True, help="'api=S worker=S' build seconds")
    p.add_argument("--base-s", type=float, required=True, help="seconds to make the base image")
    p.add_argument("--base-image", required=True)
    p.add_argument("--cache", choices=["cold", "warm"], required=True, help="was the engine's data root empty")
    p.add_argument("--started", type=float, required=True, help="the script's start (Unix time, s)")
    p.add_argument("--out", type=Path, required=True, help="the JSON results file to update")
    a = p.parse_args()

    t0 = time.monotonic()
    key = wait_for("admin key", 120, lambda: a.admin_key_file.is_file() and a.admin_key_file.read_text().strip())
    wait_for("gateway /healthz", 60, lambda: _ok(f"{a.url}/healthz"))
    wait_for("a live worker (/readyz)", 600, lambda: _ok(f"{a.url}/readyz"), interval_s=2.0)
    ready_s = round(time.monotonic() - t0, 1)
    job = run_job(a.url, key, a.work)
    print(f"[docker smoke] job: {job}")
    print(f"[docker smoke] web page served, tus-js-client bundle: {check_page(a.url)}")
    uids = {name: check_not_root(a.docker, name) for name in (a.api, a.worker)}
    healthy_s = {name: wait_healthy(a.docker, name, 300) for name in (a.api, a.worker)}
    sizes = {k: int(v) for k, v in _pairs(a.sizes).items()}
    builds = {k: float(v) for k, v in _pairs(a.build_s).items()}
    run = {
        "images": {
            name: {"size_bytes": sizes[name], "size_gb": round(sizes[name] / 1e9, 2), "build_s": builds[name]}
            for name in sizes
        },
        "base_image": a.base_image,
        "base_image_s": a.base_s,
        "worker_ready_s": ready_s,
        "job": job,
        "uids": dict(zip(("api", "worker"), uids.values(), strict=True)),
        "healthy_after_s": dict(zip(("api", "worker"), healthy_s.values(), strict=True)),
        "total_s_before_cleanup": round(time.time() - a.started, 1),
        "machine": f"{os.cpu_count()} CPU cores",
    }
    for name, image in run["images"].items():  # type: ignore[attr-defined]
        print(f"[docker smoke] image {name}: {image['size_gb']} GB, built in {image['build_s']} s")
    results: dict[str, Any] = json.loads(a.out.read_text()) if a.out.is_file() else {}
    results[a.cache] = run
    tmp = a.out.with_suffix(".json.tmp")
    with tmp.open("w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(a.out)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
