"""The Python client package (`clients/python`) against a real gateway and worker on real speech.

The package is installed from its folder into a fresh venv (`python3 -m venv`, `pip install`,
once per session), where torch cannot be imported; every client run below is that venv's
`whisperx-client` command or its Python library in a subprocess, never this test process's code.

Real jobs (each costs the worker CPU, so few): a two-voice espeak-ng conversation transcribed on a
real terminal (tmux: the rendered screen is read back) whose outputs the other format tests reuse;
one file piped with a non-media file beside it (plain lines, exit code 1); one job followed by the
library through a TCP proxy that cuts the event stream mid-job (the ids received are compared with
the job's stream in Redis); one job interrupted with Ctrl-C on the terminal and cancelled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import REPO
from tests.e2e.conftest import Service
from tests.metrics import wer
from tests.speech import CONVERSATION, Turn, make_conversation

CLIENT_DIR = REPO / "clients" / "python"
STAGES = ("decode", "transcribe", "align", "diarize", "merge")
#: How long one client run may take (a short file on the CPU worker, models loading on first use).
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class ClientVenv:
    """The fresh venv holding only the client package."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.root / "bin" / "whisperx-client"

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment without anything that points at the project's venv or code."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WHISPERX_URL")}
        env["PATH"] = f"{self.root / 'bin'}:{env.get('PATH', '')}"
        return {**env, **extra}

    def run(self, *args: str, url: str, cwd: Path, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run `whisperx-client ARGS` piped (stdout is not a terminal), WHISPERX_URL set to `url`."""
        return subprocess.run(
            [str(self.cli), *args],
            cwd=cwd,
            env=self.env(WHISPERX_URL=url),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    """`python3 -m venv` + `pip install ./clients/python` (PyPI), once per session."""
    root = tmp_path_factory.mktemp("client-venv") / "venv"
    # This interpreter's `-m venv` makes a venv on its base Python (3.11, as scripts/install.sh picks).
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=ClientVenv(root).env())
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, str(CLIENT_DIR)], capture_output=True, text=True, env=ClientVenv(root).env())
    assert done.returncode == 0, done.stdout + done.stderr
    return ClientVenv(root)


def _speech(directory: Path, name: str, turns: list[tuple[str, str]]) -> tuple[Path, list[Turn]]:
    """espeak-ng speech of `turns` saved as `directory/name`, with its ground truth."""
    wav, gt = make_conversation(directory / f"{name}.parts", turns)
    target = directory / name
    shutil.copyfile(wav, target)
    return target, gt


def _job_by_filename(svc: Service, filename: str) -> dict[str, Any]:
    """The newest job of the gateway with this file name."""
    with svc.client() as c:
        jobs = [j for j in c.get("/v1/jobs", params={"limit": 500}).json()["jobs"] if j["filename"] == filename]
    assert jobs, f"no job for {filename}"
    return dict(jobs[0])


class Tmux:
    """A private tmux server (own socket) running one command in a 140x12 terminal."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.socket = f"wxc-{uuid.uuid4().hex[:8]}"
        self.rc_file = cwd / f".rc-{self.socket}"
        # The shell ignores Ctrl-C (a trap, which its child does not inherit) so it records the exit code.
        script = f"trap true INT; {command}; echo $? > {self.rc_file}; sleep 600"
        self._tmux("new-session", "-d", "-s", "cli", "-x", "140", "-y", "12", "-c", str(cwd), f"sh -c '{script}'")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        """The terminal's visible screen, as tmux renders it."""
        return self._tmux("capture-pane", "-p", "-t", "cli")

    def keys(self, *keys: str) -> None:
        """Type keys (tmux names: `C-c`, `Enter`, or literal text)."""
        self._tmux("send-keys", "-t", "cli", *keys)

    def exit_code(self) -> int | None:
        """The command's exit code once it ended."""
        text = self.rc_file.read_text().strip() if self.rc_file.exists() else ""
        return int(text) if text else None

    def until(self, done: Any, timeout: float = RUN_TIMEOUT_S) -> list[str]:
        """Screens captured every 0.25 s until `done(screen)` is true; fails on timeout."""
        screens: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screens.append(self.screen())
            if done(screens[-1]):
                return screens
            time.sleep(0.25)
        raise AssertionError("the terminal never showed what was expected:\n" + screens[-1])

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@dataclass
class TtyRun:
    """`whisperx-client transcribe` of the conversation on a terminal, and what it left."""

    job: dict[str, Any]
    screens: list[str]
    exit_code: int
    output: Path
    truth: list[Turn]
    workdir: Path


@pytest.fixture(scope="module")
def tty_run(service: Service, client_venv: ClientVenv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TtyRun]:
    """Job 1: the two-voice conversation, json output, 2 speakers, on a tmux terminal."""
    work = tmp_path_factory.mktemp("tty")
    audio, truth = _speech(work, "tty-talk.wav", CONVERSATION[:2])
    cmd = (
        f"env -u PYTHONPATH -u VIRTUAL_ENV WHISPERX_URL={service.url} {client_venv.cli} "
        f"transcribe {audio.name} --format json -o out --speakers 2"
    )
    term = Tmux(cmd, work)
    try:
        screens = term.until(lambda _: term.exit_code() is not None)
        screens.append(term.screen())
        code = term.exit_code()
        assert code is not None
    finally:
        term.kill()
    job = _job_by_filename(service, audio.name)
    yield TtyRun(job, screens, code, work / "out" / "tty-talk.json", truth, work)


def test_the_client_venv_has_no_torch_and_needs_only_three_packages(client_venv: ClientVenv) -> None:
    probe = (
        "import importlib.metadata as m, importlib.util as u, json;"
        "print(json.dumps({'torch': u.find_spec('torch') is not None,"
        " 'service': u.find_spec('whisperx_service') is not None,"
        " 'client': u.find_spec('whisperx_client') is not None,"
        " 'requires': m.requires('whisperx-client')}))"
    )
    done = subprocess.run([str(client_venv.python), "-c", probe], capture_output=True, text=True, env=client_venv.env())
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["client"] and not found["torch"] and not found["service"], found
    assert sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0] for r in found["requires"]) == [
        "httpx",
        "httpx-sse",
        "rich",
    ]
    torch = subprocess.run([str(client_venv.python), "-c", "import torch"], capture_output=True, text=True)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr


def test_transcribe_on_a_terminal_draws_a_bar_and_writes_the_api_result(tty_run: TtyRun, service: Service) -> None:
    assert tty_run.exit_code == 0, tty_run.screens[-1]
    assert tty_run.job["status"] == "succeeded"
    # While it ran, the bar showed the file and a pipeline stage with its percent.
    live = [s for s in tty_run.screens if "tty-talk.wav" in s and any(re.search(rf"\b{st}\b", s) for st in STAGES)]
    assert live, "no screen showed the file with a stage:\n" + "\n---\n".join(tty_run.screens[-5:])
    assert any(re.search(r"\b\d{1,3}%", s) for s in live)
    final = tty_run.screens[-1]
    assert "tty-talk.wav" in final and "100%" in final and "done" in final, final
    # The output is the API's result, whole.
    api = service.result(tty_run.job["id"]).json()
    assert json.loads(tty_run.output.read_text()) == api
    text = " ".join(s["text"] for s in api["segments"])
    w = wer(" ".join(t.text for t in tty_run.truth), text)
    assert w <= 0.2, f"WER {w:.3f}: {text!r}"
    assert {s["id"] for s in api["speakers"]} and len(api["speakers"]) == 2
    assert not [p.name for p in tty_run.output.parent.iterdir() if p.name.startswith(".")]  # no temp file left


_SRT_TIME = r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})"
_VTT_TIME = r"(\d{2,}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def _cues(text: str, timing: str, *, vtt: bool) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of each SubRip or WebVTT cue; speaker prefixes removed, text unescaped."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    if vtt:
        assert blocks.pop(0).strip() == "WEBVTT"
    cues = []
    for block in blocks:
        lines = block.split("\n")
        if not vtt:
            assert lines.pop(0).strip().isdigit(), block
        m = re.fullmatch(rf"{timing} --> {timing}", lines[0])
        assert m, block
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        assert end > start
        body = " ".join(lines[1:])
        if vtt:
            body = re.sub(r"^<v [^>]+>", "", body).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        else:
            body = re.sub(r"^\[[^\]]+\] ", "", body)
        cues.append((start, end, body))
    return cues


def _words(text: str) -> list[str]:
    return text.split()


def test_result_formats_parse_and_match_the_api(tty_run: TtyRun, service: Service, client_venv: ClientVenv) -> None:
    job_id = tty_run.job["id"]
    api = service.result(job_id).json()
    api_words = _words(" ".join(s["text"] for s in api["segments"]))
    for fmt, timing in (("srt", _SRT_TIME), ("vtt", _VTT_TIME)):
        out = tty_run.workdir / f"result.{fmt}"
        done = client_venv.run(
            "jobs", "result", job_id, "--format", fmt, "-o", str(out), url=service.url, cwd=tty_run.workdir
        )
        assert done.returncode == 0, done.stderr
        assert out.read_bytes() == service.result(job_id, fmt).content
        cues = _cues(out.read_text(), timing, vtt=fmt == "vtt")
        assert _words(" ".join(c[2] for c in cues)) == api_words
        assert cues[-1][1] <= api["duration"] + 0.5  # cue times lie within the audio
    # Plain text to stdout, and the typed JSON commands.
    txt = client_venv.run("jobs", "result", job_id, "--format", "txt", url=service.url, cwd=tty_run.workdir)
    assert txt.returncode == 0 and txt.stdout == service.result(job_id, "txt").text
    status = client_venv.run("jobs", "status", job_id, "--json", url=service.url, cwd=tty_run.workdir)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"
    listed = client_venv.run("--json", "jobs", "list", "--status", "succeeded", url=service.url, cwd=tty_run.workdir)
    assert listed.returncode == 0 and job_id in [j["id"] for j in json.loads(listed.stdout)]
    waited = client_venv.run("jobs", "wait", job_id, "--json", url=service.url, cwd=tty_run.workdir)
    assert waited.returncode == 0 and json.loads(waited.stdout)["id"] == job_id
    # Cancelling an ended job is the API's 409 job_finished: exit 1 with the code.
    cancel = client_venv.run("jobs", "cancel", job_id, "--json", url=service.url, cwd=tty_run.workdir)
    assert cancel.returncode == 1
    assert json.loads(cancel.stdout) == [
        {"id": job_id, "error": {"code": "job_finished", "message": json.loads(cancel.stdout)[0]["error"]["message"]}}
    ]
    missing = client_venv.run("jobs", "status", "0" * 32, "--json", url=service.url, cwd=tty_run.workdir)
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "job_not_found"


def test_piped_transcribe_prints_lines_and_exits_1_when_a_file_fails(
    service: Service, client_venv: ClientVenv, tmp_path: Path
) -> None:
    """Job 2: one speech file and one non-media file in one run, stdout a pipe."""
    audio, truth = _speech(tmp_path, "piped-talk.wav", [("B", "Please send the budget to Maria before Friday.")])
    (tmp_path / "notes.bin").write_bytes(b"these are meeting notes, not audio\n" * 50)
    done = client_venv.run(
        "transcribe", audio.name, "notes.bin", "--format", "srt", "-o", "out", "--no-diarize", "--language", "en",
        url=service.url, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "\x1b" not in done.stdout  # no terminal escapes when piped
    lines = done.stdout.splitlines()
    mine = [line for line in lines if line.startswith("piped-talk.wav: ")]
    assert any(re.fullmatch(r"piped-talk\.wav: (transcribe|align|merge|decode) \d+%.*", line) for line in mine), lines
    size_mb = f"{audio.stat().st_size / 1e6:.1f} MB"
    assert mine[:2] == [f"piped-talk.wav: upload {size_mb}", f"piped-talk.wav: uploaded {size_mb}"], lines
    assert mine[-1] == "piped-talk.wav: succeeded 100% -> out/piped-talk.srt", lines
    assert [line for line in lines if line.startswith("notes.bin: failed: unsupported_media: ")], lines
    job = _job_by_filename(service, audio.name)
    srt = tmp_path / "out" / "piped-talk.srt"
    assert srt.read_bytes() == service.result(job["id"], "srt").content
    cue_text = " ".join(c[2] for c in _cues(srt.read_text(), _SRT_TIME, vtt=False))
    assert wer(truth[0].text, cue_text) <= 0.2, cue_text
    assert not (tmp_path / "out" / "notes.srt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["piped-talk.srt"]


def test_json_output_and_usage_errors(service: Service, client_venv: ClientVenv, tmp_path: Path) -> None:
    """No worker job: a refused upload (--json) and usage errors."""
    (tmp_path / "notes.bin").write_bytes(b"not audio at all\n" * 100)
    done = client_venv.run("transcribe", "notes.bin", "--json", url=service.url, cwd=tmp_path)
    assert done.returncode == 1
    (result,) = json.loads(done.stdout)["results"]
    assert result["status"] == "failed" and result["job_id"] is None and result["output"] is None
    assert result["error"]["code"] == "unsupported_media"
    assert done.stderr == ""
    for args in (
        ("transcribe",),
        ("transcribe", "notes.bin", "--format", "docx"),
        ("transcribe", "missing.wav"),
        ("transcribe", "notes.bin", "--concurrency", "0"),
        ("jobs",),
        ("jobs", "frobnicate"),
    ):
        usage = client_venv.run(*args, url=service.url, cwd=tmp_path)
        assert usage.returncode == 2, (args, usage.stdout, usage.stderr)
        assert "usage:" in usage.stderr or "error:" in usage.stderr
    unreachable = client_venv.run("--url", "http://127.0.0.1:9", "jobs", "list", "--json", url="", cwd=tmp_path)
    assert unreachable.returncode == 1 and json.loads(unreachable.stdout)["error"]["code"] == "connection_failed"


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 to the gateway whose open connections can be cut at will.

    It logs the head of every request that goes through it, so a test can read the
    `Last-Event-ID` a client sent when it reconnected.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.requests: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self.lock:
                self.pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and re.match(rb"(GET|POST|DELETE|HEAD) ", data):
                    with self.lock:
                        self.requests.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> int:
        """Cut every open connection (both sides); returns how many were open."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def close(self) -> None:
        self.server.close()
        self.cut()


_FOLLOW = """
import json, sys
from whisperx_client import Client, WaitTimeout

url, path = sys.argv[1], sys.argv[2]
def say(**kw):
    print(json.dumps(kw), flush=True)

with Client(url) as wx:
    sent = []
    accepted = wx.submit(path, num_speakers=2, language="en", on_progress=lambda s, t: sent.append([s, t]))
    say(accepted=accepted.id, sent=sent[-1], reports=len(sent))
    try:
        wx.wait(accepted.id, timeout=0.01)
        say(wait_timeout=False)
    except WaitTimeout as e:
        say(wait_timeout=True, timeout=e.timeout)
    last = None
    for event in wx.events(accepted.id):
        last = event.id
        say(id=event.id, type=event.type, stage=event.stage, percent=event.percent)
    after_end = [e.id for e in wx.events(accepted.id, last_event_id=last)]
    transcript = wx.result(accepted.id)
    final = wx.wait(accepted.id, timeout=60)
    listed = [j.id for j in wx.list(page_size=1, limit=3)]
    say(
        done=True, status=final.status, after_end=after_end, text=transcript.text,
        words=len(transcript.words()), speakers=sorted(s.id for s in transcript.speakers),
        segment_speakers=sorted({s.speaker for s in transcript.segments if s.speaker}),
        duration=transcript.duration, listed=listed,
    )
"""


def test_library_events_resume_across_cut_connections_without_loss_or_repeats(
    service: Service, client_venv: ClientVenv, tmp_path: Path
) -> None:
    """Job 3: the library follows a job through a proxy that cuts the stream twice mid-job."""
    audio, truth = _speech(tmp_path, "cut-talk.wav", CONVERSATION[2:5])
    script = tmp_path / "follow.py"
    script.write_text(_FOLLOW)
    proxy = CuttableProxy(("127.0.0.1", int(service.url.rsplit(":", 1)[1])))
    proc = subprocess.Popen(
        [str(client_venv.python), str(script), f"http://127.0.0.1:{proxy.port}", str(audio)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_venv.env(),
    )
    records: list[dict[str, Any]] = []
    cuts: list[str] = []  # the id of the last event printed when each cut was made
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            rec = json.loads(line)
            records.append(rec)
            progress = [r for r in records if r.get("type") == "progress"]
            # Cut after the first progress event, and again three progress events later.
            if rec.get("type") == "progress" and len(progress) in (1, 4) and proxy.cut():
                cuts.append(rec["id"])
        proc.wait(RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    accepted, timed_out, *events, done = records
    assert accepted["sent"] == [audio.stat().st_size, audio.stat().st_size] and accepted["reports"] >= 1
    assert timed_out == {"wait_timeout": True, "timeout": 0.01}
    assert cuts, "the job ended before any progress event could be cut"
    job_id = accepted["accepted"]

    # The ids received are exactly the job's stream in Redis, in order, once each.
    ids = [e["id"] for e in events]
    assert ids[0] == "0-0" and events[0]["type"] == "snapshot"
    keys = redis.Redis.from_url(service.env["REDIS_URL"], decode_responses=True)
    stored = [entry_id for entry_id, _ in keys.xrange(f"{service.env['REDIS_KEY_PREFIX']}:job:{job_id}:events")]
    assert ids[1:] == stored
    assert events[-1]["type"] == "succeeded"
    assert sum(e["type"] == "succeeded" for e in events) == 1

    # Each cut made the client reconnect with the id of the last event it had read.
    streams = [r for r in proxy.requests if f"/v1/jobs/{job_id}/events" in r]
    resumed = [m.group(1) for r in streams if (m := re.search(r"(?im)^last-event-id: (\S+)", r))]
    assert len(resumed) >= len(cuts) + 1  # every cut, plus the resume after the end
    for cut, last_id in zip(cuts, resumed, strict=False):
        assert ids.index(last_id) >= ids.index(cut)  # it may have read on a little before the cut landed
    assert resumed[-1] == ids[-1]  # the resume after the end (answered 204)

    # After the terminal event a resume is a 204: nothing more. The typed result is the API's.
    assert done["after_end"] == [] and done["status"] == "succeeded"
    api = service.result(job_id).json()
    assert done["text"] == " ".join(s["text"].strip() for s in api["segments"] if s["text"].strip())
    assert done["words"] == sum(len(s["words"]) for s in api["segments"])
    assert done["speakers"] == sorted(s["id"] for s in api["speakers"])
    assert done["duration"] == api["duration"]
    w = wer(" ".join(t.text for t in truth), done["text"])
    assert w <= 0.2, f"WER {w:.3f}"
    with service.client() as c:
        newest = [j["id"] for j in c.get("/v1/jobs", params={"limit": 3}).json()["jobs"]]
    assert done["listed"] == newest and len(set(newest)) == 3


def test_ctrl_c_on_a_terminal_asks_and_cancels_the_job(
    service: Service, client_venv: ClientVenv, tmp_path: Path
) -> None:
    """Job 4: interrupted on the terminal once it runs; answering yes cancels it."""
    audio, _ = _speech(tmp_path, "stop-talk.wav", CONVERSATION[5:8])
    cmd = (
        f"env -u PYTHONPATH -u VIRTUAL_ENV WHISPERX_URL={service.url} {client_venv.cli} "
        f"transcribe {audio.name} --format srt -o out"
    )
    term = Tmux(cmd, tmp_path)
    try:
        term.until(lambda s: re.search(r"stop-talk\.wav\s+(decode|transcribe|align|diarize)\b", s) is not None)
        term.keys("C-c")
        term.until(lambda s: "Cancel 1 unfinished job(s)" in s, timeout=60)
        term.keys("y", "Enter")
        term.until(lambda _: term.exit_code() is not None, timeout=60)
        code, screen = term.exit_code(), term.screen()
    finally:
        term.kill()
    assert code == 130, screen
    assert "cancelled job" in screen
    job = _job_by_filename(service, audio.name)
    assert service.wait(job["id"], 120)["status"] == "cancelled"
    assert not (tmp_path / "out" / "stop-talk.srt").exists()
