"""The worker's decode (real ffprobe and ffmpeg) refuses hostile files, keeps nothing, and its job
error message is the code's fixed one (ffmpeg's output stays in the log message)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile_media import concat_list, hls_playlist, unknown_codec_wav
from tests.integration.api.conftest import wav_bytes
from whisperx_service.errors import AudioDecodeFailed
from whisperx_service.pipeline.audio.pcm import decode_to_pcm


@pytest.mark.parametrize("kind", ["concat", "hls", "unknown-codec"])
def test_hostile_sources_fail_with_the_fixed_message(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "real.wav"
    target.write_bytes(wav_bytes(1.0))
    src = tmp_path / "source"
    data = {
        "concat": lambda: concat_list(target, nul=True),
        "hls": lambda: hls_playlist(target, nul=True),
        "unknown-codec": unknown_codec_wav,
    }[kind]()
    src.write_bytes(data)
    dst = tmp_path / "work" / "audio.pcm"
    dst.parent.mkdir()
    with pytest.raises(AudioDecodeFailed) as info:
        decode_to_pcm(src, dst, max_duration_s=60)
    assert info.value.code == "audio_decode_failed"
    assert info.value.public_message == AudioDecodeFailed.public_message
    assert str(tmp_path) not in info.value.public_message
    assert list(dst.parent.iterdir()) == []  # no partial PCM left
