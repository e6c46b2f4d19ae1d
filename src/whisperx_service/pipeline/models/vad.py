"""Offline Silero VAD for WhisperX.

WhisperX's own `vad_method="silero"` fetches the model with `torch.hub.load("snakers4/silero-vad")`
(GitHub), which fails without internet. `OfflineSileroVad` runs the Silero VAD v6 ONNX model that
ships inside the faster-whisper wheel (`faster_whisper/assets/silero_vad_v6.onnx`) through
`faster_whisper.vad.get_speech_timestamps`, and plugs into `whisperx.load_model(vad_model=...)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from faster_whisper.vad import VadOptions, get_speech_timestamps
from whisperx.diarize import Segment as WhisperxSegment
from whisperx.vads.silero import Silero
from whisperx.vads.vad import Vad

#: Silence (ms) that ends a speech region, and padding (ms) added on each side of it. These are the
#: defaults of upstream silero-vad's `get_speech_timestamps`, which WhisperX's torch.hub Silero
#: relies on (it only passes the threshold and the maximum duration). faster-whisper's own
#: defaults (2000 ms, 400 ms) are tuned for its unbatched decoding and would merge too much.
MIN_SILENCE_MS = 100
SPEECH_PAD_MS = 30
#: Sample rate (Hz) the ONNX model is run at here.
SAMPLE_RATE = 16_000


class OfflineSileroVad(Vad):  # type: ignore[misc]  # whisperx is untyped
    """Silero VAD v6 (ONNX, from faster-whisper) with WhisperX's `Vad` interface.

    Args:
        vad_onset: speech probability threshold in (0, 1); WhisperX's default is 0.5.
        chunk_size: longest speech region (s); longer regions are split. WhisperX then merges
            regions into chunks of at most this length (`merge_chunks`). Whisper sees 30 s at most.

    Raises:
        ValueError: `vad_onset` is not in (0, 1).
    """

    #: Same merge as WhisperX's Silero class: regions are merged into chunks of <= chunk_size s.
    merge_chunks = staticmethod(Silero.merge_chunks)

    def __init__(self, vad_onset: float = 0.5, chunk_size: float = 30.0) -> None:
        super().__init__(vad_onset)
        self.vad_onset = vad_onset
        self.chunk_size = chunk_size

    @staticmethod
    def preprocess_audio(audio: Any) -> Any:
        """Identity: the model takes the raw 16 kHz float waveform."""
        return audio

    def __call__(self, audio: dict[str, Any], **kwargs: Any) -> list[WhisperxSegment]:
        """Find speech regions.

        Args:
            audio: `{"waveform": (num_samples,) float array or tensor, "sample_rate": 16000}`.

        Returns:
            WhisperX segments (`start`, `end` in seconds, speaker "UNKNOWN"), in time order.

        Raises:
            ValueError: the sample rate is not 16 kHz.
        """
        sample_rate = int(audio["sample_rate"])
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"OfflineSileroVad needs 16 kHz audio, got {sample_rate} Hz")
        wav = audio["waveform"]
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        samples = np.asarray(wav, dtype=np.float32).reshape(-1)
        options = VadOptions(
            threshold=self.vad_onset,
            max_speech_duration_s=self.chunk_size,
            min_silence_duration_ms=MIN_SILENCE_MS,
            speech_pad_ms=SPEECH_PAD_MS,
        )
        stamps = get_speech_timestamps(samples, options, sampling_rate=sample_rate)
        return [WhisperxSegment(t["start"] / sample_rate, t["end"] / sample_rate, "UNKNOWN") for t in stamps]
