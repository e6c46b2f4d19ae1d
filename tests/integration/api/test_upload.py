"""Pure helpers of the upload parser."""

from __future__ import annotations

import pytest

from whisperx_service.api.multipart_form import clean_filename, media_type_allowed


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("talk.wav", "talk.wav"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\talk.mp3", "talk.mp3"),
        ("my\x07 talk\x00.wav", "my talk.wav"),
        ("  spaced.ogg  ", "spaced.ogg"),
        ("x" * 300 + ".wav", "x" * 255),
        ("..", None),
        ("dir/", None),
        ("", None),
        (None, None),
    ],
)
def test_clean_filename(raw: str | None, clean: str | None) -> None:
    assert clean_filename(raw) == clean


@pytest.mark.parametrize(
    ("media_type", "ok"),
    [
        ("audio/x-wav", True),
        ("audio/mpeg", True),
        ("video/mp4", True),
        ("video/webm", True),
        ("application/ogg", True),
        ("application/octet-stream", True),
        ("text/plain", False),
        ("application/pdf", False),
        ("image/png", False),
        ("application/x-executable", False),
    ],
)
def test_media_type_allowed(media_type: str, ok: bool) -> None:
    assert media_type_allowed(media_type) is ok
