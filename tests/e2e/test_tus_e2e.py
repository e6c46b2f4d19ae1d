"""A 200 MB resumable upload (tus) through the real gateway and worker, broken off and resumed.

The file is real audio: espeak-ng speech in a WAV whose `JUNK` chunk (RIFF's padding chunk, which
every WAV reader skips) holds 200 MB of random bytes, so the upload is large and the job short.
`whisperx-client transcribe` (the client package in its own venv) is SIGKILLed once the gateway
holds half of the file, then run again with `--resume`: it continues the same upload. The stored
source has the file's SHA-256, the transcript equals a direct upload's of the speech alone, and
the gateway's resident memory grows by less than 64 MiB over the whole upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import threading
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import Service
from tests.e2e.test_client import ClientVenv, CuttableProxy, client_venv  # noqa: F401  (the session fixture)
from tests.metrics import wer
from tests.speech import CONVERSATION, Turn, make_conversation

#: Bytes of random padding in the WAV's JUNK chunk (the issue's 200 MB).
PAD_BYTES = 200 * 1000 * 1000
#: The gateway's resident memory may grow at most this much (bytes) while the file streams in.
MAX_RSS_GROWTH = 64 * 1024 * 1024
#: The client is killed once the gateway holds at least this share of the file.
KILL_AT = 0.5


def padded_wav(speech: Path, out: Path, pad: int, seed: int = 13) -> None:
    """`speech`'s PCM in a WAV whose JUNK chunk (before `data`) holds `pad` random bytes."""
    with wave.open(str(speech)) as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        pcm = w.readframes(w.getnframes())
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * width, channels * width, width * 8)
    rng = random.Random(seed)
    with out.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + pad + 8 + len(pcm)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"JUNK" + struct.pack("<I", pad))
        left = pad
        while left:
            n = min(left, 8 << 20)
            f.write(rng.randbytes(n))
            left -= n
        f.write(b"data" + struct.pack("<I", len(pcm)) + pcm)


def rss(pid: int) -> int:
    """Resident memory of a process (bytes), from /proc/PID/status VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssPeak:
    """Samples a process's VmRSS every 10 ms in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss(self.pid))

    def stop(self) -> int:
        """Stop sampling; the peak (bytes)."""
        self._stop.set()
        self._thread.join(5)
        return self.peak


def sha256(path: Path) -> str:
    """SHA-256 hex of a file, read in 8 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Audio:
    """The speech, its script, and the 200 MB file made of it (size in bytes, SHA-256 hex)."""

    speech: Path
    truth: list[Turn]
    big: Path
    size: int
    digest: str


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Audio:
    """espeak-ng speech of two turns, and `long-call.wav`: it padded to 200 MB."""
    work = tmp_path_factory.mktemp("tus-audio")
    speech, truth = make_conversation(work / "speech", CONVERSATION[:2])
    big = work / "long-call.wav"
    padded_wav(speech, big, PAD_BYTES)
    return Audio(speech, truth, big, big.stat().st_size, sha256(big))


def test_a_200_mb_upload_killed_half_way_resumes_and_transcribes_as_a_direct_upload(
    service: Service,
    client_venv: ClientVenv,  # noqa: F811
    audio: Audio,
    tmp_path: Path,
) -> None:
    speech, truth, size, digest = audio.speech, audio.truth, audio.size, audio.digest
    big = tmp_path / audio.big.name
    os.link(audio.big, big)
    direct = service.submit(speech, diarize=False, language="en")

    uploads = service.storage / "uploads"
    gateway = service.procs[-1]  # start_service starts the gateway last
    baseline = rss(gateway.pid)
    sampler = RssPeak(gateway.pid)
    env = client_venv.env(WHISPERX_URL=service.url, XDG_STATE_HOME=str(tmp_path / "state"))
    cmd = [
        str(client_venv.cli),
        "transcribe",
        big.name,
        "--format",
        "txt",
        "-o",
        "out",
        "--no-diarize",
        "--language",
        "en",
    ]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    held = 0
    while first.poll() is None:
        data = next(uploads.glob("*/data"), None) if uploads.exists() else None
        held = data.stat().st_size if data is not None else 0
        if held >= size * KILL_AT:
            os.killpg(first.pid, signal.SIGKILL)  # the connection drops mid-PATCH
            break
        time.sleep(0.002)
    first.wait(30)
    assert first.returncode == -signal.SIGKILL, "the client finished before it could be killed"
    (upload_dir,) = uploads.iterdir()
    assert KILL_AT * size <= held < size
    state = json.loads((tmp_path / "state" / "whisperx-client" / "uploads.json").read_text())
    assert list(state.values()) == [f"/v1/uploads/{upload_dir.name}"]

    second = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    peak = sampler.stop()
    assert second.returncode == 0, second.stdout + second.stderr
    first_line = second.stdout.splitlines()[0]
    assert first_line.startswith(f"long-call.wav: upload {size / 1e6:.1f} MB, resumed at "), second.stdout
    resumed_mb = float(first_line.rsplit(" at ", 1)[1].split()[0])
    assert resumed_mb * 1e6 >= KILL_AT * size - 1e5, "the second run went on from the bytes the gateway held"
    assert [p.name for p in uploads.iterdir()] == [upload_dir.name], "no second upload was made"
    job_id = json.loads((upload_dir / "info.json").read_text())["job_id"]
    assert sha256(service.storage / "jobs" / job_id / "source") == digest
    print(f"[tus] killed at {held / size:.1%}, resumed at {resumed_mb} MB, RSS +{(peak - baseline) / 2**20:.1f} MiB")
    assert peak - baseline < MAX_RSS_GROWTH, f"gateway RSS grew {(peak - baseline) / 2**20:.1f} MiB"
    assert json.loads((tmp_path / "state" / "whisperx-client" / "uploads.json").read_text()) == {}

    assert service.wait(direct["id"])["status"] == "succeeded"
    expected = service.result(direct["id"], "txt").text
    assert (tmp_path / "out" / "long-call.txt").read_text() == expected
    assert wer(" ".join(t.text for t in truth), expected) <= 0.2, expected


_UPLOAD = """
import json, sys
from pathlib import Path
from whisperx_client import Client
from whisperx_client.tus import UploadState

with Client(sys.argv[1]) as wx:
    sent = []
    accepted = wx.submit(sys.argv[2], language="en", diarize=False, state=UploadState(Path(sys.argv[3])),
                         on_progress=lambda s, t: sent.append(s))
print(json.dumps({"job": accepted.id, "first": sent[0], "last": sent[-1]}))
"""


def test_a_cut_connection_is_resumed_within_the_same_run(
    service: Service,
    client_venv: ClientVenv,  # noqa: F811
    audio: Audio,
    tmp_path: Path,
) -> None:
    """The library (no --resume): the proxy cuts every connection once the gateway holds 30 %."""
    gateway = urlsplit(service.url)
    proxy = CuttableProxy((gateway.hostname or "127.0.0.1", gateway.port or 80))
    uploads = service.storage / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    script = tmp_path / "upload.py"
    script.write_text(_UPLOAD)
    run = subprocess.Popen(
        [
            str(client_venv.python),
            str(script),
            f"http://127.0.0.1:{proxy.port}",
            str(audio.big),
            str(tmp_path / "s.json"),
        ],
        env=client_venv.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    cut = 0
    try:
        while run.poll() is None and not cut:
            new = [d for d in uploads.glob("*") if d not in before] if uploads.exists() else []
            data = new[0] / "data" if new else None
            if data is not None and data.exists() and data.stat().st_size >= 0.3 * audio.size:
                cut = proxy.cut()
            time.sleep(0.002)
        out, _ = run.communicate(timeout=300)
    finally:
        proxy.close()
    assert run.returncode == 0 and cut >= 1, (run.returncode, cut, out)
    done = json.loads(out.strip().splitlines()[-1])
    heads = [r for r in proxy.requests if r.startswith("HEAD /v1/uploads/")]
    assert heads, "after the cut the client asked the gateway for the offset"
    (made,) = [d for d in uploads.iterdir() if d not in before]  # one upload: resumed, not restarted
    info = json.loads((made / "info.json").read_text())
    assert info["job_id"] == done["job"] and done["first"] == 0 and done["last"] == audio.size
    assert sha256(service.storage / "jobs" / done["job"] / "source") == audio.digest
    with service.client() as c:
        c.delete(f"/v1/jobs/{done['job']}")  # its transcript is the first test's business
