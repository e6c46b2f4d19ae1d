"""The offline bundle builder and the fail-fast downloader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from whisperx_service.config import (
    AlignSettings,
    AsrSettings,
    Device,
    DiarizeSettings,
    ModelsSettings,
    Settings,
)
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.download import download_models
from whisperx_service.pipeline.models.prepare import COMPLETE_STAMP, prepare_models

LAYOUT = [
    "offline-diarization/config.yaml",
    "offline-diarization/segmentation/pytorch_model.bin",
    "offline-diarization/embedding/pytorch_model.bin",
    "offline-diarization/plda/xvec_transform.npz",
    "offline-diarization/plda/plda.npz",
    "nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt",
    "nltk_data/tokenizers/punkt_tab/english/collocations.tab",
    "w2v2-tiny-random-en/config.json",
    "w2v2-tiny-random-en/vocab.json",
    "w2v2-tiny-random-en/preprocessor_config.json",
    "w2v2-tiny-random-en/model.safetensors",
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A bundle built once for the module in a fresh directory."""
    root = tmp_path_factory.mktemp("bundle")
    return root, prepare_models(root)


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_layout(bundle: tuple[Path, dict[str, Path]]) -> None:
    root, paths = bundle
    assert paths == {
        "diarization": root / "offline-diarization",
        "nltk_data": root / "nltk_data",
        "w2v2_tiny_random": root / "w2v2-tiny-random-en",
    }
    missing = [rel for rel in LAYOUT if not (root / rel).is_file()]
    assert not missing
    assert not [p for p in root.iterdir() if p.name.startswith((".tmp-", ".old-"))], "no leftovers"


def test_diarization_config_is_yaml(bundle: tuple[Path, dict[str, Path]]) -> None:
    root, _ = bundle
    config = yaml.safe_load((root / "offline-diarization" / "config.yaml").read_text())
    params = config["pipeline"]["params"]
    assert config["pipeline"]["name"] == "pyannote.audio.pipelines.SpeakerDiarization"
    assert params["embedding"] == "$model/embedding"
    assert params["segmentation"] == "$model/segmentation"
    assert config["params"]["clustering"]["threshold"] == 0.5


def test_second_call_rebuilds_nothing(bundle: tuple[Path, dict[str, Path]]) -> None:
    root, paths = bundle
    before = _mtimes(root)
    assert prepare_models(root) == paths
    assert _mtimes(root) == before


def test_incomplete_part_is_rebuilt_alone(bundle: tuple[Path, dict[str, Path]]) -> None:
    root, _ = bundle
    (root / "nltk_data" / COMPLETE_STAMP).unlink()  # as if a build had stopped half-way
    diarization_before = _mtimes(root / "offline-diarization")
    prepare_models(root, with_test_models=False)
    assert (root / "nltk_data" / COMPLETE_STAMP).is_file()
    assert (root / "nltk_data/tokenizers/punkt_tab/english/abbrev_types.txt").read_text().startswith("mr\n")
    assert _mtimes(root / "offline-diarization") == diarization_before


def test_embedding_checkpoint_loads(bundle: tuple[Path, dict[str, Path]]) -> None:
    import torch
    from pyannote.audio import Model

    root, _ = bundle
    model = Model.from_pretrained(root / "offline-diarization" / "embedding" / "pytorch_model.bin")
    assert model is not None
    model.eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, 32_000) * 0.1)
        silent = model(torch.randn(1, 1, 32_000), weights=torch.zeros(1, 100))
    assert out.shape == (2, 256)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-4)
    assert torch.isnan(silent).all(), "no speech frames: NaN embedding, skipped by clustering"


@pytest.mark.parametrize("word", ["pyannote", "speechbrain", "nvidia", "wespeaker"])
def test_refuses_routing_words_in_path(tmp_path: Path, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        prepare_models(tmp_path / f"my-{word}-models")
    assert not (tmp_path / f"my-{word}-models").exists()


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub endpoint that refuses connections at once, whatever network the machine has."""
    for var in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_hub")
def test_download_fails_fast_when_hub_unreachable() -> None:
    settings = Settings(asr=AsrSettings(model="large-v3-turbo", device=Device.cpu))
    # Bounded by the timeout mark: an unreachable hub must fail, not hang on retries.
    with pytest.raises(ModelLoadFailed, match=r"Whisper model 'large-v3-turbo'.*unreachable"):
        download_models(settings, timeout_s=2.0)


@pytest.mark.timeout(30)
def test_download_refuses_when_offline_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadFailed, match=r"'large-v3'.*HF_HUB_OFFLINE"):
        download_models(Settings(asr=AsrSettings(model="large-v3")), timeout_s=2.0)


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_hub")
def test_download_needs_token_for_hub_pipeline(tmp_path: Path) -> None:
    local = tmp_path / "local-model"
    local.mkdir()
    settings = Settings(
        asr=AsrSettings(model=str(local)),
        align=AlignSettings(model=str(local)),
        diarize=DiarizeSettings(pipeline="pyannote/speaker-diarization-community-1", hf_token=None),
        models=ModelsSettings(dir=tmp_path / "models"),
    )
    with pytest.raises(ModelLoadFailed, match=r"speaker-diarization-community-1.*HF_TOKEN is missing"):
        download_models(settings, languages=("en",))
