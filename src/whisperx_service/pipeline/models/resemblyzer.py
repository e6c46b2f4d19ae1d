"""Resemblyzer's GE2E speaker encoder as a pyannote.audio speaker-embedding `Model`.

The weights are `resemblyzer/pretrained.pt` from the Resemblyzer 0.1.4 wheel on PyPI (Apache-2.0;
a 3-layer LSTM trained with the GE2E loss, Wan et al. 2018). Only that file is used, so the
package is installed without its dependencies (the `worker` extra; pyproject.toml's
`[tool.uv] override-dependencies` keeps webrtcvad and librosa out of uv.lock): the package's own
`__init__` (which needs them) is never imported.

The encoder's front end (librosa's power mel spectrogram, not log-mel) is reimplemented with
`torch.stft` and a slaney mel matrix, so the model is pure torch and runs wherever pyannote runs.
Constants come from `resemblyzer/hparams.py` and `resemblyzer/voice_encoder.py` (0.1.4); each is
named where it is defined below.

`build_checkpoint(path)` writes a pyannote-format checkpoint that
`pyannote.audio.Model.from_pretrained(path)` loads (the checkpoint names this module and class,
so this module must stay importable under the same dotted path).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from pyannote.audio.core.model import Model
from pyannote.audio.core.task import Problem, Resolution, Specifications, Task
from torch import nn

#: Input sample rate (Hz); hparams.sampling_rate.
SAMPLE_RATE = 16_000
#: STFT window: 25 ms at 16 kHz = 400 samples; hparams.mel_window_length.
N_FFT = 400
#: STFT hop: 10 ms at 16 kHz = 160 samples; hparams.mel_window_step.
HOP_LENGTH = 160
#: Mel bands; hparams.mel_n_channels.
N_MELS = 40
#: Frames in one partial utterance: 160 frames of 10 ms = 1.6 s; hparams.partials_n_frames.
PARTIAL_FRAMES = 160
#: Frames between two partials: round((16000 / 1.3) / 160) = 77, from
#: VoiceEncoder.embed_utterance(rate=1.3) and compute_partial_slices().
PARTIAL_STEP = 77
#: LSTM width, layers and embedding size; hparams.model_hidden_size / model_num_layers /
#: model_embedding_size.
HIDDEN_SIZE = 256
NUM_LAYERS = 3
EMBEDDING_SIZE = 256
#: Volume normalisation target (dBFS), only ever raising the level; hparams.audio_norm_target_dBFS
#: with audio.normalize_volume(increase_only=True) as in resemblyzer.preprocess_wav.
TARGET_DBFS = -30.0
#: Fewer kept speech frames than this (0.2 s) give no reliable embedding: the output is NaN, which
#: pyannote's clustering skips. Our choice, not Resemblyzer's.
MIN_SPEECH_FRAMES = 20
#: Duration (s) of the chunks pyannote feeds the model during diarization; informative only.
CHUNK_DURATION_S = 10.0


def _slaney_mel_filterbank() -> torch.Tensor:
    """Mel matrix equal to `librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)` (max abs diff ~2e-8).

    Returns:
        Tensor (N_MELS, N_FFT // 2 + 1) = (40, 201), slaney mel scale and slaney area norm.
    """
    import torchaudio

    fbanks = torchaudio.functional.melscale_fbanks(
        n_freqs=N_FFT // 2 + 1,
        f_min=0.0,
        f_max=SAMPLE_RATE / 2,
        n_mels=N_MELS,
        sample_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return fbanks.T.contiguous()


class ResemblyzerEmbedding(Model):
    """GE2E speaker encoder (Resemblyzer) with pyannote's embedding-model interface.

    `forward(waveforms, weights)` takes a batch of mono 16 kHz chunks and returns one L2-normalised
    256-d embedding per chunk: the chunk's power mel spectrogram is cut into 1.6 s partials every
    0.77 s, each partial goes through the LSTM, and the partial embeddings are averaged and
    renormalised (as `VoiceEncoder.embed_utterance` does).
    """

    mel_fb: torch.Tensor  # (40, 201) buffer
    window: torch.Tensor  # (400,) buffer

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, task: Task | None = None) -> None:
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.lstm = nn.LSTM(N_MELS, HIDDEN_SIZE, NUM_LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN_SIZE, EMBEDDING_SIZE)
        self.register_buffer("mel_fb", _slaney_mel_filterbank())
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))
        self.specifications = Specifications(
            problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_DURATION_S
        )

    @property
    def dimension(self) -> int:
        """Embedding size: 256."""
        return EMBEDDING_SIZE

    def mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Power mel spectrogram, as librosa.feature.melspectrogram(center=True, pad_mode="constant").

        Args:
            wav: (num_samples,) float waveform at 16 kHz.

        Returns:
            (num_frames, 40) with num_frames = 1 + num_samples // 160 (10 ms frames).
        """
        spec = torch.stft(
            wav,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.abs() ** 2  # (201, num_frames)
        mel: torch.Tensor = (self.mel_fb @ power).T
        return mel

    def embed_frames(self, mels: torch.Tensor) -> torch.Tensor:
        """Embed one utterance from its mel frames.

        Args:
            mels: (num_frames, 40) power mel frames; an utterance shorter than one partial (160
                frames) is embedded as a single shorter partial.

        Returns:
            (256,) L2-normalised embedding.
        """
        num_frames = mels.shape[0]
        if num_frames <= PARTIAL_FRAMES:
            partials = mels.unsqueeze(0)
        else:
            starts = list(range(0, num_frames - PARTIAL_FRAMES + 1, PARTIAL_STEP))
            if starts[-1] + PARTIAL_FRAMES < num_frames:
                starts.append(num_frames - PARTIAL_FRAMES)  # cover the tail with a last full partial
            partials = torch.stack([mels[s : s + PARTIAL_FRAMES] for s in starts])
        _, (hidden, _) = self.lstm(partials)
        embeds = F.relu(self.linear(hidden[-1]))  # (num_partials, 256)
        embeds = embeds / (embeds.norm(dim=1, keepdim=True) + 1e-9)
        mean = embeds.mean(dim=0)
        return mean / (mean.norm() + 1e-9)

    def forward(  # type: ignore[override]  # pyannote passes `weights=` by keyword
        self, waveforms: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embed a batch of chunks.

        Args:
            waveforms: (batch, 1, num_samples) float at 16 kHz.
            weights: optional (batch, num_weight_frames) per-frame speaker activity from pyannote's
                segmentation (any frame rate; mapped onto the 10 ms mel frames by position). Frames
                with weight <= 0.5 are dropped before embedding.

        Returns:
            (batch, 256) L2-normalised embeddings; a row is NaN where fewer than 20 frames (0.2 s)
            of speech remain.
        """
        out: list[torch.Tensor] = []
        for b in range(waveforms.shape[0]):
            wav = waveforms[b, 0]
            rms = torch.sqrt(torch.mean(wav**2) + 1e-12)
            gain_db = TARGET_DBFS - 20.0 * torch.log10(rms)
            if gain_db > 0:
                wav = wav * (10.0 ** (gain_db / 20.0))
            mels = self.mel(wav)
            if weights is not None:
                w = weights[b]
                frame_idx = torch.arange(mels.shape[0], device=mels.device)
                idx = torch.clamp((frame_idx * w.shape[0]) // mels.shape[0], max=w.shape[0] - 1)
                mels = mels[w[idx] > 0.5]
                if mels.shape[0] < MIN_SPEECH_FRAMES:
                    out.append(torch.full((EMBEDDING_SIZE,), float("nan"), device=waveforms.device))
                    continue
            out.append(self.embed_frames(mels))
        return torch.stack(out)


def _resemblyzer_weights() -> Path:
    """Path of `resemblyzer/pretrained.pt`, found without importing resemblyzer.

    Raises:
        FileNotFoundError: resemblyzer is not installed (the `worker` extra: `make install`).
    """
    spec = importlib.util.find_spec("resemblyzer")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise FileNotFoundError("resemblyzer is not installed: install the `worker` extra (`make install`)")
    path = Path(next(iter(locations))) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the resemblyzer package")
    return path


def build_checkpoint(path: Path) -> Path:
    """Write a pyannote-format checkpoint of the Resemblyzer encoder (about 5.7 MB).

    Args:
        path: file to write (conventionally `<pipeline dir>/embedding/pytorch_model.bin`); its
            parent directory must exist.

    Returns:
        `path`, loadable with `pyannote.audio.Model.from_pretrained(path)`.

    Raises:
        FileNotFoundError: resemblyzer (its `pretrained.pt`) is not installed.
    """
    import lightning
    import pyannote.audio

    model = ResemblyzerEmbedding()
    state = torch.load(_resemblyzer_weights(), map_location="cpu", weights_only=True)["model_state"]
    model.lstm.load_state_dict({k.removeprefix("lstm."): v for k, v in state.items() if k.startswith("lstm.")})
    model.linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items() if k.startswith("linear.")})
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "pyannote.audio": {
            "versions": {"pyannote.audio": pyannote.audio.__version__},
            "architecture": {"module": __name__, "class": ResemblyzerEmbedding.__name__},
            "specifications": model.specifications,
        },
    }
    torch.save(checkpoint, path)
    return path
