"""Pre-fetch the standard models where a hub can be reached (`whisperx-service models download`).

`download_models(settings)` fetches the standard models (Whisper by name, WhisperX's default
wav2vec2 aligners, the pyannote pipeline) into their caches, and fails at once with
`ModelLoadFailed` when the hub cannot be reached.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit
from urllib.request import getproxies

from whisperx_service.config import Settings
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.pipeline.models.loaders import (
    align_cache_dir,
    default_align_model,
    hub_offline,
    is_local_path,
    resolve_asr_model,
    resolve_diarization_pipeline,
)

log = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection to a hub before declaring it unreachable.
HUB_PROBE_TIMEOUT_S = 5.0
#: Where the default English aligner (a torchaudio bundle) is downloaded from.
TORCHAUDIO_URL = "https://download.pytorch.org"


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
