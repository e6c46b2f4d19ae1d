"""What the settings groups share: audio constants, the group config, enums and address checks."""

from __future__ import annotations

import ipaddress
from enum import StrEnum

from pydantic_settings import SettingsConfigDict

#: Sample rate (Hz) of the decoded audio every stage works on; Whisper and pyannote expect 16 kHz.
SAMPLE_RATE = 16_000
#: Bytes per decoded sample (16-bit signed PCM).
BYTES_PER_SAMPLE = 2


def group(prefix: str) -> SettingsConfigDict:
    """The config of one settings group: its env prefix, `.env`, unknown names ignored, frozen."""
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )


class Device(StrEnum):
    """Where the models run."""

    auto = "auto"  # cuda when torch sees a GPU, else cpu
    cpu = "cpu"
    cuda = "cuda"


class VadMethod(StrEnum):
    """Voice activity detection used to cut audio into speech regions before transcription."""

    pyannote = "pyannote"  # the pyannote segmentation model bundled in whisperx (offline)
    silero = "silero"  # Silero VAD v6 ONNX shipped in faster-whisper (offline, ~2x faster on CPU)


class AlignBackend(StrEnum):
    """How word timestamps are computed."""

    wav2vec2 = "wav2vec2"  # WhisperX's CTC forced alignment with a wav2vec2 model (name or directory)
    whisper = "whisper"  # the Whisper model's own cross-attention heads + DTW (no extra model)


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (127.0.0.0/8, ::1; IPv6 may be in brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets: `[::1]:9100`) -> (host without brackets, port).

    Raises:
        ValueError: no port, a port outside 1-65535, or an empty host.
    """
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:9100 or [::1]:9100)")
    return host, int(port)
