"""The offline bundle built for real in a fresh directory: layout, idempotence, a loadable checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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
