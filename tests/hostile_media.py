"""Hostile files made at run time for the tests (nothing committed): playlists that point at other
files, and a well-formed WAV no decoder can read."""

from __future__ import annotations

import struct
from pathlib import Path

#: A WAVE format tag ffmpeg maps to no decoder (it answers `Decoder (codec none) not found`).
UNKNOWN_WAVE_TAG = 0x1234


def concat_list(target: Path, *, nul: bool) -> bytes:
    """An ffmpeg concat script that reads `target`; with `nul`, a NUL byte hides it from libmagic."""
    return f"ffconcat version 1.0\nfile '{target}'\n".encode() + (b"# \x00\n" if nul else b"")


def hls_playlist(target: Path, *, nul: bool) -> bytes:
    """An HLS playlist whose one segment is `target`; with `nul`, a NUL byte hides it from libmagic."""
    head = b"#EXTM3U\n" + (b"#\x00\n" if nul else b"")
    return head + f"#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n".encode()


def unknown_codec_wav(data_bytes: int = 16384) -> bytes:
    """A RIFF/WAVE file, 16 kHz mono, with codec tag `UNKNOWN_WAVE_TAG`: ffprobe reads it, ffmpeg
    cannot decode it."""
    data = bytes(range(256)) * (data_bytes // 256)
    fmt = struct.pack("<HHIIHH", UNKNOWN_WAVE_TAG, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
