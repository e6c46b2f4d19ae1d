"""What ffprobe and ffmpeg may read, and how they are run: one place for the gateway and the worker.

A crafted file can make ffmpeg's demuxers open other files or URLs (a concat list, an HLS or DASH
playlist, an image sequence pattern) or a device. So every ffprobe and ffmpeg run here reads with
`-protocol_whitelist file` (no network, no pipes) and `-format_whitelist` of `ALLOWED_FORMATS`
(single-file audio and video containers only), under a wall-clock timeout (the process is killed)
and resource limits (CPU seconds, address space) set in the child before it starts.

The gateway probes every upload with `probe` before it accepts it; the worker decodes with
`ffmpeg_input_args` and `run_limited`'s limits.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: ffmpeg demuxer names a file may be read with (the names `ffmpeg -demuxers` prints; a file whose
#: probed demuxer is not here is refused by ffmpeg itself). Single-file audio and video containers
#: only: never `concat`, `hls`, `dash`, `image2`, `*_pipe`, `lavfi`, devices or playlists.
ALLOWED_FORMATS: tuple[str, ...] = (
    "wav", "w64", "aiff", "au", "caf",  # PCM containers
    "mp3", "flac", "ogg", "aac", "amr", "amrnb", "amrwb", "wv", "ape", "tta",  # audio
    "matroska", "webm", "mov", "mp4", "m4a", "3gp",  # matroska,webm and mov,mp4,m4a,... demuxers
    "asf", "avi", "flv", "mpegts", "mpeg",  # video containers (their audio is used)
)  # fmt: skip
#: Protocols a read may use: local files only.
ALLOWED_PROTOCOLS = "file"
#: Wall-clock limit (s) of one ffprobe run; a probe reads headers and a few packets.
PROBE_TIMEOUT_S = 30.0
#: CPU-time limit (s) of one ffprobe run (RLIMIT_CPU; the kernel kills it past this).
PROBE_CPU_S = 20
#: Address-space limit (bytes) of one ffprobe or ffmpeg run (RLIMIT_AS): room for the codecs'
#: threads and buffers, none for a decompression bomb.
ADDRESS_SPACE_BYTES = 4 * 1024**3


class ToolMissing(RuntimeError):
    """ffprobe or ffmpeg is not installed."""


class ProbeFailed(ValueError):
    """ffprobe refused the file, failed on it, or ran past its limits; the text is for logs only."""


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe found: the demuxer name, the duration (s) if the container says, audio streams."""

    format_name: str
    duration_s: float | None
    audio_streams: int


def input_args() -> list[str]:
    """The flags that go before every `-i`: local files only, allowed demuxers only."""
    return ["-protocol_whitelist", ALLOWED_PROTOCOLS, "-format_whitelist", ",".join(ALLOWED_FORMATS)]


def tool(name: str) -> str:
    """The path of `ffprobe` or `ffmpeg`.

    Raises:
        ToolMissing: it is not on PATH.
    """
    exe = shutil.which(name)
    if exe is None:
        raise ToolMissing(f"{name} is not installed")
    return exe


def rlimits(cpu_s: int, address_space_bytes: int = ADDRESS_SPACE_BYTES) -> Callable[[], None]:
    """A `preexec_fn` that caps the child's CPU time (s) and address space (bytes), and core dumps."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def probe(path: Path, *, timeout_s: float = PROBE_TIMEOUT_S) -> MediaInfo:
    """Probe `path` with ffprobe under the allow-lists, a timeout and resource limits.

    Blocking: call it in a worker thread from async code.

    Args:
        path: a local file.
        timeout_s: wall-clock seconds before ffprobe is killed.
    Returns:
        The demuxer's name (e.g. `wav`, `matroska,webm`), the duration in seconds (None when the
        container does not say, e.g. a WebM from a browser's recorder) and the audio stream count.
    Raises:
        ToolMissing: ffprobe is not installed.
        ProbeFailed: ffprobe refused or could not read the file, or ran past its limits.
    """
    cmd = [
        tool("ffprobe"), "-v", "error", *input_args(),
        "-show_entries", "format=format_name,duration:stream=codec_type",
        "-of", "json", "-i", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=rlimits(PROBE_CPU_S),  # the child runs only setrlimit before exec
        )
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        raise ProbeFailed(f"ffprobe ran longer than {timeout_s} s") from None
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip()[-500:]
        raise ProbeFailed(f"ffprobe exited with {done.returncode}: {err}")
    try:
        data = json.loads(done.stdout)
        fmt = data["format"]
        name = str(fmt["format_name"])
        raw_duration = fmt.get("duration")
        duration = float(raw_duration) if raw_duration not in (None, "N/A") else None
        audio = sum(1 for s in data.get("streams", []) if s.get("codec_type") == "audio")
    except (ValueError, KeyError, TypeError) as e:
        raise ProbeFailed(f"unreadable ffprobe output: {e!r}") from None
    return MediaInfo(format_name=name, duration_s=duration, audio_streams=audio)


def format_allowed(format_name: str) -> bool:
    """True when one of the demuxer's names (`matroska,webm` has two) is in `ALLOWED_FORMATS`."""
    return any(n in ALLOWED_FORMATS for n in format_name.split(","))
