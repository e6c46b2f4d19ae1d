"""URL input end to end: a real gateway, outbound worker and CPU worker; files served on 127.0.0.1.

One short two-voice recording (espeak-ng) is transcribed five times, the fewest that cover the
feature: uploaded, and fetched from a local server plainly (Content-Length), chunked, through
three redirects, and slowly with the fetching outbound worker killed (-9) mid-fetch (a new one
takes the item over after its lease). All five transcripts must be the same text, close to the
script. The failures need no worker: a too-large file (announced, or counted while streaming), a
page that is not media, a server that stops sending, an error status and a redirect loop each end
the job `failed` with their code. With OUTBOUND_ALLOW_PRIVATE off (a second gateway and outbound
worker, no GPU worker), a URL to 127.0.0.1, ::1, ::ffff:127.0.0.1 or `localhost` ends
`url_refused` without any connection (the servers' counts and access logs); that every redirect
hop is checked again is `test_ssrf.py`'s, on the same client.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import wait_until
from tests.e2e.file_server import FileServer, start_file_server
from tests.e2e.test_client import ClientVenv, client_venv
from tests.metrics import wer
from tests.speech import CONVERSATION, make_conversation

TURNS = CONVERSATION[:2]
#: WER ceiling of the tiny.en model on espeak-ng speech (as the other e2e tests allow).
MAX_WER = 0.25
#: MAX_UPLOAD_BYTES of these services: above the recording (about 400 KB), below the big files.
MAX_UPLOAD = 2_000_000
#: FETCH_READ_TIMEOUT_S of these services: a server silent this long is dropped.
READ_TIMEOUT_S = 2.0
OPTIONS = {"align": "false", "diarize": "false", "language": "en"}

__all__ = ["client_venv"]  # the session's client venv (tests/e2e/test_client.py)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path, gt = make_conversation(tmp_path_factory.mktemp("speech"), TURNS)
    return path, " ".join(t.text for t in gt)


@pytest.fixture(scope="module")
def files(speech: tuple[Path, str]) -> Iterator[FileServer]:
    fs = start_file_server(speech[0].read_bytes())
    yield fs
    fs.close()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway + outbound worker + one CPU worker; private targets allowed (the file server is on loopback)."""
    s = start_service(
        tmp_path_factory.mktemp("urlin"),
        redis_url,
        models_dir,
        outbound=True,
        REDIS_URL=redis_url,
        OUTBOUND_ALLOW_PRIVATE="true",
        OUTBOUND_POLL_S="0.1",
        OUTBOUND_LEASE_S="3",
        FETCH_READ_TIMEOUT_S=str(READ_TIMEOUT_S),
        MAX_UPLOAD_BYTES=str(MAX_UPLOAD),
    )
    yield s
    stop_service(s)


def submit_url(svc: Service, url: str, **fields: str) -> str:
    """POST /v1/jobs with `url` (JSON); returns the job id."""
    with svc.client() as c:
        r = c.post("/v1/jobs", json={"url": url, **fields})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued"
    return str(r.json()["id"])


def text_of(svc: Service, job_id: str) -> str:
    body = svc.wait(job_id, 300)
    assert body["status"] == "succeeded", body
    r = svc.result(job_id)
    assert r.status_code == 200
    return " ".join(s["text"].strip() for s in r.json()["segments"])


def test_fetched_files_give_the_uploads_transcript(svc: Service, files: FileServer, speech: tuple[Path, str]) -> None:
    path, script = speech
    size = path.stat().st_size
    upload = str(svc.submit(path, **OPTIONS)["id"])
    ids = {kind: submit_url(svc, files.url(f"/{kind}/talk.wav"), **OPTIONS) for kind in ("plain", "chunked")}
    ids["redirected"] = submit_url(svc, files.url("/r/3/talk.wav"), **OPTIONS)
    expected = text_of(svc, upload)
    assert wer(script, expected) <= MAX_WER, expected
    for kind, job_id in ids.items():
        assert text_of(svc, job_id) == expected, kind
        with svc.client() as c:
            body = c.get(f"/v1/jobs/{job_id}").json()
        assert body["size_bytes"] == size and body["fetched_bytes"] == size
        assert body["filename"] == "talk.wav"
    for n in (3, 2, 1, 0):  # every hop of the redirect chain was asked once
        assert files.paths.count(f"/r/{n}/talk.wav" if n else "/plain/talk.wav") >= 1
    # The event stream shows the fetch stage with its bytes, then the job's own stages.
    events = [e for e in svc.events(ids["plain"]) if e.event == "progress"]
    fetch = [e.data for e in events if e.data["stage"] == "fetch"]
    assert fetch[0]["bytes"] == 0 and fetch[-1]["bytes"] == fetch[-1]["total_bytes"] == size
    assert {e.data["stage"] for e in events} >= {"fetch", "transcribe"}
    assert events.index(next(e for e in events if e.data["stage"] != "fetch")) == len(fetch)


def test_kill_9_of_the_fetching_worker_loses_nothing(svc: Service, files: FileServer, speech: tuple[Path, str]) -> None:
    path, script = speech
    outbound = [p for p in svc.procs if p.args == svc.outbound_cmd and p.poll() is None]
    assert len(outbound) == 1
    job_id = submit_url(svc, files.url("/slow/talk.wav"), **OPTIONS)
    with svc.client() as c:
        wait_until(lambda: (c.get(f"/v1/jobs/{job_id}").json().get("fetched_bytes") or 0) > 0, 30, "fetch started")
        assert c.get(f"/v1/jobs/{job_id}").json()["stage"] == "fetch"
    svc.kill_worker(outbound[0])
    svc.start_outbound()
    text = text_of(svc, job_id)
    assert wer(script, text) <= MAX_WER, text
    assert files.paths.count("/slow/talk.wav") == 2  # the killed try and the one that finished
    with svc.client() as c:
        assert c.get(f"/v1/jobs/{job_id}").json()["size_bytes"] == path.stat().st_size


def test_client_cli_transcribes_a_url_and_the_library_submits_one(
    svc: Service, files: FileServer, speech: tuple[Path, str], client_venv: ClientVenv, tmp_path: Path
) -> None:
    """`whisperx-client transcribe URL` (the installed client, piped): nothing is uploaded, the
    output is named after the URL's file, and its text is the job's. The library's `submit(url)`
    answers a job too (a refused URL: no worker time spent)."""
    _, script = speech
    url = files.url("/plain/cli%20talk.wav?x=1")
    done = client_venv.run(
        "transcribe", url, "--format", "txt", "-o", "out", "--no-diarize", "--language", "en",
        url=svc.url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("cli talk.wav: ")]
    assert not [line for line in lines if " upload" in line], lines
    assert lines[-1] == "cli talk.wav: succeeded 100% -> out/cli talk.txt", lines
    text = (tmp_path / "out" / "cli talk.txt").read_text()
    assert wer(script, text) <= MAX_WER, text
    assert "/plain/cli%20talk.wav?x=1" in files.paths
    code = (
        "import sys; from whisperx_client import Client; "
        "print(Client(sys.argv[1]).submit(sys.argv[2], language='en').id)"
    )
    lib = subprocess.run(
        [str(client_venv.python), "-c", code, svc.url, "ftp-is-not-http://x"],
        env=client_venv.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lib.returncode != 0 and "No such file" in lib.stderr  # not a URL: a path, which does not exist
    lib = subprocess.run(
        [str(client_venv.python), "-c", code, svc.url, "http://127.0.0.1:9/none.wav"],
        env=client_venv.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert lib.returncode == 0, lib.stderr
    assert failed(svc, lib.stdout.strip())["code"] == "url_unreachable"


def failed(svc: Service, job_id: str) -> dict[str, Any]:
    body = svc.wait(job_id, 120)
    assert body["status"] == "failed", body
    return dict(body["error"])


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (f"/big/{MAX_UPLOAD + 1_000_000}", "url_too_large"),  # counted while streaming
        (f"/announced/{MAX_UPLOAD + 1}", "url_too_large"),  # refused at the header
        ("/text", "unsupported_media"),
        ("/hang", "url_unreachable"),  # silent for longer than FETCH_READ_TIMEOUT_S
        ("/missing.wav", "url_unreachable"),  # 404
        ("/r/9/talk.wav", "url_unreachable"),  # more than FETCH_MAX_REDIRECTS (5)
    ],
)
def test_a_bad_source_ends_the_job_with_its_code(svc: Service, files: FileServer, path: str, code: str) -> None:
    job_id = submit_url(svc, files.url(path))
    error = failed(svc, job_id)
    assert error["code"] == code
    assert "127.0.0.1" not in error["message"] and "/" not in error["message"]
    job_dir = svc.storage / "jobs" / job_id
    assert not (job_dir / "source").exists()
    assert [p.name for p in job_dir.iterdir() if p.name.startswith(".tmp")] == []
    final = (job_dir / "final.json").read_text()
    assert f'"error_code":"{code}"' in final.replace(" ", "")


def test_a_bad_url_is_refused_at_once(svc: Service) -> None:
    with svc.client() as c:
        for body in ({"url": "ftp://127.0.0.1/a.wav"}, {"url": "http://user:pw@127.0.0.1/a.wav"}, {"language": "en"}):
            r = c.post("/v1/jobs", json=body)
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", r.text
        r = c.post("/v1/jobs", json={"url": "http://127.0.0.1/a.wav", "bogus": "1"})
        assert r.status_code == 422 and "bogus" in r.json()["error"]["message"]
        # The urlencoded form is the same request.
        r = c.post("/v1/jobs", data={"url": "http://127.0.0.1:9/a.wav", "language": "en"})
        assert r.status_code == 202
        assert failed(svc, r.json()["id"])["code"] == "url_unreachable"  # nothing listens on port 9


def test_cancel_while_fetching_stops_the_fetch(svc: Service, files: FileServer) -> None:
    job_id = submit_url(svc, files.url("/slow/cancelled.wav"))
    with svc.client() as c:
        wait_until(lambda: (c.get(f"/v1/jobs/{job_id}").json().get("fetched_bytes") or 0) > 0, 30, "fetch started")
        assert c.delete(f"/v1/jobs/{job_id}").status_code == 200
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    job_dir = svc.storage / "jobs" / job_id
    wait_until(lambda: not any(p.name.startswith(".tmp") for p in job_dir.iterdir()) or None, 30, "fetch stopped")
    assert not (job_dir / "source").exists()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway + outbound worker with the address check on; no GPU worker (no job runs)."""
    s = start_service(
        tmp_path_factory.mktemp("urlin-ssrf"),
        redis_url,
        models_dir,
        workers=0,
        outbound=True,
        REDIS_URL=redis_url,
        OUTBOUND_ALLOW_PRIVATE="false",
        OUTBOUND_POLL_S="0.1",
    )
    yield s
    stop_service(s)


@pytest.fixture(scope="module")
def targets(speech: tuple[Path, str]) -> Iterator[dict[str, FileServer]]:
    """The recording served on 127.0.0.1 and on ::1."""
    servers = {"v4": start_file_server(speech[0].read_bytes()), "v6": start_file_server(b"", host="::1")}
    yield servers
    for fs in servers.values():
        fs.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost"])
def test_loopback_url_refused_without_connecting(strict: Service, targets: dict[str, FileServer], host: str) -> None:
    server = targets["v6" if host == "[::1]" else "v4"]
    job_id = submit_url(strict, f"http://{host}:{server.port}/plain/talk.wav")
    error = failed(strict, job_id)
    assert error["code"] == "url_refused"
    assert host.strip("[]") not in error["message"]
    assert all((fs.connections, fs.paths) == (0, []) for fs in targets.values())
    with httpx.Client() as c:  # the server does answer: the refusal was the service's
        assert c.get(targets["v4"].url("/plain/talk.wav")).status_code == 200
    targets["v4"].connections, targets["v4"].paths = 0, []
