"""What a new source must pass before it becomes a job, however it arrived (an upload, a fetched URL).

`check_free`: storage keeps at least STORAGE_MIN_FREE_BYTES free. `check_source`: ffprobe
(`media.probe`: local file only, allowed demuxers, timeout, rlimits) finds an allowed container
with an audio stream, at most MAX_DURATION_S long. Both block: the gateway runs them in a thread,
the outbound worker calls them directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from whisperx_service import media
from whisperx_service.errors import AudioTooLong, InsufficientStorage, InternalError, UnsupportedMedia
from whisperx_service.media import MediaInfo

log = structlog.get_logger(__name__)

#: The message of every `unsupported_media` refusal (the reason is logged, never sent).
UNSUPPORTED_MEDIA = "the file is not audio or video in a supported format"


def check_free(root: Path, min_free: int, need: int = 0) -> None:
    """Refuse when the filesystem of `root` would keep less than `min_free` bytes free after `need` more.

    Args:
        root: the storage root (before the first job it may not exist yet: its nearest existing
            parent is asked).
        min_free: bytes that must stay free (STORAGE_MIN_FREE_BYTES).
        need: bytes about to be written (an announced Content-Length), 0 when unknown.
    Raises:
        InsufficientStorage: it would.
        OSError: the filesystem cannot be asked.
    """
    while not root.exists() and root.parent != root:
        root = root.parent
    st = os.statvfs(root)
    if st.f_bavail * st.f_frsize - need < min_free:
        raise InsufficientStorage("not enough storage space for the upload; try again later")


def check_source(path: Path, max_duration_s: float) -> MediaInfo:
    """ffprobe a stored source: an allowed container, with audio, at most `max_duration_s` seconds
    (a container that does not state its duration is capped later by the worker's decode).

    Returns:
        What ffprobe found (demuxer, duration in s or None, audio streams).
    Raises:
        UnsupportedMedia: ffprobe refused it, or it has no audio stream (message `UNSUPPORTED_MEDIA`).
        AudioTooLong: its duration is over `max_duration_s`.
        InternalError: ffprobe is not installed here.
    """
    try:
        info = media.probe(path)
    except media.ToolMissing:
        log.error("ffprobe_missing")
        raise InternalError("the gateway cannot check uploads") from None
    except media.ProbeFailed as e:
        log.info("upload_refused", reason=str(e))
        raise UnsupportedMedia(UNSUPPORTED_MEDIA) from None
    if not media.format_allowed(info.format_name) or info.audio_streams == 0:
        log.info("upload_refused", format=info.format_name, audio_streams=info.audio_streams)
        raise UnsupportedMedia(UNSUPPORTED_MEDIA)
    if info.duration_s is not None and info.duration_s > max_duration_s:
        log.info("upload_refused", duration_s=info.duration_s)
        raise AudioTooLong(f"the audio is longer than the limit of {max_duration_s:.0f} s")
    return info
