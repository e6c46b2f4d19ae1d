"""Decode any audio/video file to 16 kHz mono 16-bit PCM on disk with ffmpeg, and read it back.

The decoded file is raw little-endian int16 (`s16le`), 2 bytes per sample, 32,000 bytes per
second. It lives on disk, never whole in RAM during decoding; readers map it with `numpy.memmap`.
ffmpeg is called with an argument list (no shell), `-nostdin` and `media.input_args()` (local
files only, allowed demuxers only), so a crafted input can never make it open a URL, another file
through a playlist or concat list, or a device; CPU time, memory and wall-clock time are limited.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from whisperx_service import media
from whisperx_service.config import BYTES_PER_SAMPLE, SAMPLE_RATE
from whisperx_service.errors import AudioDecodeFailed, AudioTooLong, FfmpegMissing

#: Scale from int16 PCM to float32 in [-1, 1): 2**15.
INT16_SCALE = 32768.0


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """A decoded PCM file: `path` holds `samples` int16 samples at `SAMPLE_RATE` Hz."""

    path: Path
    samples: int

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.samples / SAMPLE_RATE


#: CPU seconds ffmpeg may spend per second of allowed audio (RLIMIT_CPU): decoding and resampling
#: run hundreds of times faster than real time, so 0.25 is far above any honest file's need.
DECODE_CPU_S_PER_AUDIO_S = 0.25
#: CPU seconds every decode may spend besides (start-up, seeking, demuxing a large video).
DECODE_CPU_BASE_S = 120
#: Wall-clock limit of a decode as a multiple of its CPU limit (the disk may be slower than the CPU).
DECODE_WALL_FACTOR = 2.0
#: ffmpeg's error output kept for the log (characters from its end).
STDERR_TAIL_BYTES = 4096


def probe_duration(src: Path) -> float | None:
    """The container's duration in seconds from ffprobe (`media.probe`), or None when it does not say.

    Used for progress and an early length check; the decoded sample count is the truth.

    Raises:
        FfmpegMissing: ffprobe is not installed.
        AudioDecodeFailed: ffprobe refused the file (a demuxer not allowed, not media, no audio).
    """
    try:
        info = media.probe(src)
    except media.ToolMissing as e:
        raise FfmpegMissing(str(e)) from None
    except media.ProbeFailed as e:
        raise AudioDecodeFailed(f"ffprobe refused the file: {e}") from None
    if info.audio_streams == 0:
        raise AudioDecodeFailed(f"no audio stream in the {info.format_name} file")
    return info.duration_s


def decode_to_pcm(
    src: Path,
    dst: Path,
    *,
    max_duration_s: float,
    progress: Callable[[float], None] | None = None,
) -> DecodedAudio:
    """Decode `src` to raw 16 kHz mono s16le PCM at `dst` (temp file, fsync, rename).

    ffmpeg reads with `media.input_args()` (local files, allowed demuxers only) under a CPU-time and
    address-space limit (`media.rlimits`) and a wall-clock limit; it is killed past either.

    Args:
        src: any file ffmpeg reads (audio or video; the first audio stream is used).
        dst: where the PCM goes; its directory must exist.
        max_duration_s: decoding stops one second past this; a longer file is refused.
        progress: called with 0-100 as ffmpeg reports its position (needs a probed duration).
    Returns:
        The decoded file and its sample count.
    Raises:
        FfmpegMissing: ffmpeg or ffprobe is not installed.
        AudioDecodeFailed: ffprobe refused the file, ffmpeg failed, ran past its limits or found no
            audio. The message (with ffmpeg's stderr) is for the worker's log; the job gets the
            code's fixed message.
        AudioTooLong: the audio is longer than `max_duration_s` (code `audio_too_long`).
    """
    total = probe_duration(src)
    if total is not None and total > max_duration_s + 1:
        raise AudioTooLong(f"audio is {total:.0f} s long; the limit is {max_duration_s:.0f} s")
    try:
        exe = media.tool("ffmpeg")
    except media.ToolMissing as e:
        raise FfmpegMissing(str(e)) from None
    tmp = dst.with_name(dst.name + ".part")
    cmd = [
        exe, "-nostdin", "-hide_banner", "-loglevel", "error", *media.input_args(),
        "-i", str(src), "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-acodec", "pcm_s16le", "-f", "s16le", "-t", f"{max_duration_s + 1:.3f}",
        "-progress", "pipe:1", "-nostats", "-y", str(tmp),
    ]  # fmt: skip
    cpu_s = int(DECODE_CPU_BASE_S + max_duration_s * DECODE_CPU_S_PER_AUDIO_S)
    # stderr goes to a file: ffmpeg can print without bound on a corrupt file, and a pipe read only
    # after stdout ends would fill and stall it.
    errors = tempfile.TemporaryFile(mode="w+", dir=dst.parent, prefix=".tmp-ffmpeg-")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        preexec_fn=media.rlimits(cpu_s),  # the child runs only setrlimit before exec
    )
    # Past the wall-clock limit the process is killed; its pipes close and the loop below ends.
    watchdog = threading.Timer(cpu_s * DECODE_WALL_FACTOR, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            # `-progress` prints key=value lines; out_time_us is the decoded position (microseconds).
            if progress is not None and total and line.startswith("out_time_us="):
                with contextlib.suppress(ValueError):
                    progress(min(100.0, int(line.split("=", 1)[1]) / 1e6 / total * 100.0))
        rc = proc.wait()
        stderr = _tail(errors, STDERR_TAIL_BYTES)
        if rc != 0:
            detail = stderr.strip()[-500:] or f"ffmpeg exited with {rc}"
            if "matches no streams" in stderr:
                detail = "the file has no audio stream"
            raise AudioDecodeFailed(f"cannot decode the audio (exit {rc}): {detail}")
        size = tmp.stat().st_size
        if size < BYTES_PER_SAMPLE * SAMPLE_RATE // 100:  # under 10 ms of audio
            raise AudioDecodeFailed("the file contains no decodable audio")
        samples = size // BYTES_PER_SAMPLE
        if samples / SAMPLE_RATE > max_duration_s:
            raise AudioTooLong(f"audio is longer than the limit of {max_duration_s:.0f} s")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
        return DecodedAudio(dst, samples)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _tail(f: IO[str], n: int) -> str:
    """The last `n` characters (about bytes) of a text file opened for reading and writing."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - n))
    try:
        return f.read()
    except UnicodeDecodeError:
        return ""


def open_pcm(path: Path) -> np.memmap:
    """Map a decoded PCM file read-only: shape (samples,), dtype int16. Nothing is read yet."""
    return np.memmap(path, dtype=np.int16, mode="r")


def read_window(pcm: np.ndarray, start_s: float = 0.0, end_s: float | None = None) -> np.ndarray:
    """Samples [start_s, end_s) of mapped PCM as float32 in [-1, 1), shape (n,), a fresh array.

    Args:
        pcm: int16 samples at `SAMPLE_RATE` (e.g. from `open_pcm`).
        start_s: window start in seconds (clamped to 0).
        end_s: window end in seconds; None = the end of the audio.
    """
    a = max(0, round(start_s * SAMPLE_RATE))
    b = len(pcm) if end_s is None else min(len(pcm), round(end_s * SAMPLE_RATE))
    out = np.asarray(pcm[a:b], dtype=np.float32) / INT16_SCALE
    release_pages(pcm, a, b)
    return out


def release_pages(pcm: np.ndarray, start: int, end: int) -> None:
    """Drop the mapped pages of samples [start, end) of `pcm` from this process's resident set.

    Reading a memory-mapped file leaves every page it touched counted in the process's RSS until
    the mapping is closed, so a job that reads a 10-hour file chunk by chunk would end up "using"
    1.1 GB. `madvise(MADV_DONTNEED)` on a read-only file mapping only unmaps the pages: the data
    stays in the kernel's page cache and is read again from it if touched later. A `pcm` that is
    not a whole-file `numpy.memmap` (a plain array, a slice) is left alone.
    """
    mm = pcm.base if isinstance(pcm, np.memmap) else None
    if not isinstance(mm, mmap.mmap) or getattr(pcm, "offset", 0) != 0 or end <= start:
        return
    lo = start * pcm.itemsize // mmap.PAGESIZE * mmap.PAGESIZE
    hi = min(len(mm), end * pcm.itemsize)
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
